package journal_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/muster"
)

// The crash test: a child process (this test binary, re-executed) adds items
// through the layer at Synced from many goroutines and prints the ID of
// each item whose Add returned nil; its Fire appends the IDs it delivers to
// a ledger file. The parent SIGKILLs it at a random moment, restarts it on
// the same directory, many times, then lets a last child drain the journal,
// and checks that every accepted ID reached Fire at least once with its
// value.
//
// JOURNAL_CRASH_ROUNDS (shared with the Log's TestCrash) sets the number of
// kills (default 30, a few seconds), JOURNAL_CRASH_SEED the seed of the
// kill moments (printed by every run).
const (
	crashDirEnv    = "JOURNAL_LAYER_CRASH_CHILD_DIR"
	crashDrainEnv  = "JOURNAL_LAYER_CRASH_CHILD_DRAIN"
	crashRoundEnv  = "JOURNAL_LAYER_CRASH_CHILD_ROUND"
	crashProducers = 8
)

func TestLayerCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary many times")
	}
	rounds := envInt(t, "JOURNAL_CRASH_ROUNDS", 30)
	seed := uint64(envInt(t, "JOURNAL_CRASH_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("JOURNAL_CRASH_ROUNDS=%d JOURNAL_CRASH_SEED=%d", rounds, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()

	accepted := map[string]bool{} // values: unique, and Add returns no ID
	run := func(round int, drain bool) []string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLayerCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(round))
		if drain {
			cmd.Env = append(cmd.Env, crashDrainEnv+"=1")
		}
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var lines []string
		var mu sync.Mutex
		read := make(chan struct{})
		started := make(chan struct{})
		go func() {
			defer close(read)
			sc := bufio.NewScanner(out)
			first := true
			for sc.Scan() {
				mu.Lock()
				lines = append(lines, sc.Text())
				mu.Unlock()
				if first {
					close(started)
					first = false
				}
			}
			if first {
				close(started)
			}
		}()
		if !drain {
			<-started // it adds items now: kill it at a random moment
			time.Sleep(time.Duration(5+rng.IntN(150)) * time.Millisecond)
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
		<-read
		err = cmd.Wait()
		if drain && err != nil {
			t.Fatalf("the draining child: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		return lines
	}
	for round := range rounds {
		n := 0
		for _, line := range run(round, false) {
			if v, ok := strings.CutPrefix(line, "accepted "); ok {
				accepted[v] = true
				n++
			}
		}
		t.Logf("round %d: %d items accepted before the kill", round, n)
	}
	last := run(rounds, true)

	// The ledger: "ID value" per delivery. Every accepted value must be
	// there, always under one ID (the same through replays).
	idOf := map[string]string{} // value -> ID
	deliveries := 0
	f, err := os.Open(filepath.Join(dir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("ledger line %q", sc.Text())
		}
		if prev, ok := idOf[v]; ok && prev != id {
			t.Fatalf("%s delivered as %s and as %s", v, prev, id)
		}
		idOf[v] = id
		deliveries++
	}
	missing := 0
	for v := range accepted {
		if _, ok := idOf[v]; !ok {
			if missing++; missing <= 10 {
				t.Errorf("accepted %s: never delivered", v)
			}
		}
	}
	if missing > 0 || len(accepted) == 0 {
		t.Fatalf("%d of %d accepted items not delivered", missing, len(accepted))
	}
	if !slices.Contains(last, "left 0") {
		t.Fatalf("the draining child left items in the journal: %q", last)
	}
	t.Logf("%d rounds: %d items accepted, all delivered (%d deliveries of %d items: %d duplicates)",
		rounds, len(accepted), deliveries, len(idOf), deliveries-len(idOf))
}

// TestLayerCrashChild is the child of TestLayerCrash; it does nothing
// unless run by it.
func TestLayerCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestLayerCrash")
	}
	round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
	if err := crashChild(dir, round, os.Getenv(crashDrainEnv) != ""); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
}

func crashChild(dir string, round int, drain bool) error {
	log, err := journal.Open(filepath.Join(dir, "journal"), journal.LogOptions{Durability: journal.Synced, SegmentBytes: 64 << 10})
	if err != nil {
		return err
	}
	ledger, err := os.OpenFile(filepath.Join(dir, "ledger"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer ledger.Close()
	b := journal.Wrap(&muster.Batcher[journal.Item[string]]{
		MaxBatchSize: 64, BatchTimeout: 2 * time.Millisecond, MaxConcurrentBatches: 2, PendingWorkCapacity: 256,
		Fire: func(ctx context.Context, items []journal.Item[string]) error {
			var buf []byte
			for _, it := range items {
				buf = fmt.Appendf(buf, "%s %s\n", it.ID, it.Value)
			}
			_, err := ledger.Write(buf) // one write(2): kept by the OS through a SIGKILL
			time.Sleep(time.Millisecond)
			return err
		},
	}, journal.Config[string]{Store: log, Codec: journal.JSON[string]()})
	if err := b.Start(); err != nil {
		return err
	}
	if drain {
		<-b.ReplayDone()
		if err := b.Stop(); err != nil {
			return err
		}
		if err := b.Stats().ReplayErr; err != nil {
			return err
		}
		left := log.Stats().Items
		if err := log.Close(); err != nil {
			return err
		}
		fmt.Printf("left %d\n", left)
		return nil
	}
	fmt.Println("adding")
	var wg sync.WaitGroup
	for p := range crashProducers {
		wg.Go(func() {
			for i := 0; ; i++ {
				v := fmt.Sprintf("r%d-p%d-%d", round, p, i)
				if err := b.Add(context.Background(), v); err != nil {
					fmt.Fprintln(os.Stderr, "add:", err)
					return
				}
				// One write(2) per line: whole lines reach the parent.
				_, _ = os.Stdout.WriteString("accepted " + v + "\n")
			}
		})
	}
	wg.Wait() // until killed
	return nil
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return n
}
