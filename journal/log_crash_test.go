package journal

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The crash test's child: when crashChildDir is set, TestCrashChild appends
// from 32 goroutines to the log in that directory, at the level in
// crashChildLevel, and writes each ID to stdout (one write per line) as soon
// as its Append returned, until it is killed.
const (
	crashChildDir   = "JOURNAL_CRASH_CHILD_DIR"
	crashChildLevel = "JOURNAL_CRASH_CHILD_LEVEL"
	crashRounds     = "JOURNAL_CRASH_ROUNDS" // rounds of TestCrash; default 6
)

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildDir)
	if dir == "" {
		t.Skip("the child of TestCrash, run by it")
	}
	level, _ := strconv.Atoi(os.Getenv(crashChildLevel))
	l, err := Open(dir, LogOptions{SegmentBytes: 256 << 10, Durability: Durability(level)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id, err := l.Append(context.Background(), fmt.Appendf(nil, "p%d-%d", p, i), time.Now(), false)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				os.Stdout.WriteString(string(id) + "\n")
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrash SIGKILLs a child appending at random moments, reopens the log,
// and checks that every ID the child printed (its Append had returned) is
// recovered unless the test finished it; between rounds it finishes half of
// what it recovered, and restarts the child on the same directory, so the
// log accumulates history over the rounds. The child appends at Synced,
// Interval and Process in turn: a SIGKILL is a process crash, which every
// level promises to survive.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	rounds := 6
	if s := os.Getenv(crashRounds); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("%s=%q", crashRounds, s)
		}
		rounds = n
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(15, 15))
	acked := map[ID]bool{}    // printed by a child: Append returned
	finished := map[ID]bool{} // Finish returned
	checked := 0
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		level := []Durability{Synced, Interval, Process}[round%3]
		cmd.Env = append(os.Environ(), crashChildDir+"="+dir, fmt.Sprintf("%s=%d", crashChildLevel, level))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan []ID)
		started := make(chan struct{})
		go func() {
			var ids []ID
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if len(ids) == 0 {
					close(started)
				}
				ids = append(ids, ID(sc.Text()))
			}
			if len(ids) == 0 {
				close(started)
			}
			lines <- ids
		}()
		// Kill at a random moment once the child appends.
		select {
		case <-started:
		case <-time.After(time.Minute):
			t.Fatal("the child printed nothing in a minute")
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		ids := <-lines
		cmd.Wait()
		// Each line is one write(2) of under PIPE_BUF bytes, atomic on a
		// pipe: the kill cuts no line.
		for _, id := range ids {
			acked[id] = true
		}
		if len(ids) == 0 {
			t.Fatalf("round %d: the child printed no ID before it was killed", round)
		}

		l := mustOpen(t, dir, LogOptions{SegmentBytes: 256 << 10})
		got := map[ID]bool{}
		for _, r := range recoverAll(t, l) {
			got[r.id] = true
		}
		for id := range acked {
			if finished[id] && got[id] {
				t.Errorf("round %d: %s finished but recovered", round, id)
			}
			if !finished[id] && !got[id] {
				t.Errorf("round %d (%v): %s acknowledged but not recovered", round, level, id)
			}
			checked++
		}
		if st := l.Stats(); st.Corrupt != 0 {
			t.Errorf("round %d: %d corrupt records after a SIGKILL", round, st.Corrupt)
		}
		var fin []ID
		for id := range got {
			if rng.IntN(2) == 0 {
				fin = append(fin, id)
			}
		}
		if err := l.Finish(fin...); err != nil {
			t.Fatal(err)
		}
		for _, id := range fin {
			finished[id] = true
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d (%v): %d IDs printed by the child, %d recovered, %d finished", round, level, len(ids), len(got), len(fin))
	}
	t.Logf("%d rounds, %d checks of an acknowledged ID (%d IDs)", rounds, checked, len(acked))
}
