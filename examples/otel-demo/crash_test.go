package main

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/redistest"
)

// The test binary runs the demo itself (main) when this variable is set: the
// crash test's child process, killed with SIGKILL.
const childEnv = "OTEL_DEMO_CRASH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Args = append([]string{"otel-demo"}, strings.Split(os.Getenv(childEnv+"_ARGS"), "\n")...)
		main()
		return
	}
	os.Exit(m.Run())
}

// TestJournalSurvivesSIGKILL is the by-hand check of the README, automated:
// the demo runs with -journal DIR -ledger FILE under load, is killed with
// SIGKILL at a random moment, and is started again with the same flags; at
// the end every order the ledger says was accepted (Add returned nil) is
// written (at least once). orders-db never fails here (-failure-rate 0, no
// malformed orders), so that no order is dead-lettered: each must be written.
func TestJournalSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for about 10 s")
	}
	crashRounds(t, 3*time.Second, "-journal", filepath.Join(t.TempDir(), "journal")).wantNoneLost(t)
}

// TestRedisJournalSurvivesSIGKILL is the same with the journal in Redis
// (-journal redis): each restart is a new replica, which takes over the
// killed ones' orders within DeadAfter plus 3 heartbeats (8 s with the
// defaults), so its last run lasts longer than that.
func TestRedisJournalSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for about 16 s")
	}
	addr := redistest.Start(t, redistest.Options{}).Addr()
	crashRounds(t, 12*time.Second, "-journal", "redis", "-redis-addr", addr).wantNoneLost(t)
}

// TestNoJournalLosesOnSIGKILL is the control: the same rounds without
// -journal lose the orders queued and in flight at each kill, so the
// ledger check above can see a loss.
func TestNoJournalLosesOnSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for about 7 s")
	}
	l := crashRounds(t, 3*time.Second)
	if len(l.missing) == 0 {
		t.Errorf("without -journal, %d orders accepted and none lost by 3 kills: the ledger check cannot tell a loss", l.accepted)
	}
}

// crashLoss is what crashRounds found in the ledger: the orders accepted,
// and the IDs of those never written.
type crashLoss struct {
	accepted int
	missing  []string
}

// wantNoneLost fails the test for each accepted order never written.
func (l crashLoss) wantNoneLost(t *testing.T) {
	t.Helper()
	for i, id := range l.missing {
		if i == 5 {
			break
		}
		t.Errorf("order %s accepted, never written", id)
	}
	if len(l.missing) > 0 {
		t.Errorf("%d of %d accepted orders never written", len(l.missing), l.accepted)
	}
}

// crashRounds runs the demo with journal (its flags) and a ledger, kills it
// in three rounds, runs it once more for last, and reads the ledger.
func crashRounds(t *testing.T, last time.Duration, journal ...string) crashLoss {
	ledgerPath := filepath.Join(t.TempDir(), "ledger")
	args := append(journal, "-ledger", ledgerPath,
		"-metrics-addr", "", "-traces", "", "-progress", "0", "-cycle", "0",
		"-failure-rate", "0", "-poison-every", "0", "-rate", "100",
		// Slow batches, so that a kill finds orders queued and in flight.
		"-latency", "40ms", "-max-inflight", "2",
	)
	run := func(extra ...string) *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"=1", childEnv+"_ARGS="+strings.Join(append(args, extra...), "\n"))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("child output:\n%s", out.String())
			}
		})
		return cmd
	}
	const rounds = 3
	killedWith := 0
	for round := range rounds {
		cmd := run("-duration", "1h")
		// Kill once the ledger has grown past what the last round left,
		// at a random moment within the next second.
		before := countLines(t, ledgerPath, "accepted")
		waitFor(t, 10*time.Second, func() bool { return countLines(t, ledgerPath, "accepted") > before+50 })
		time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		n := countLines(t, ledgerPath, "accepted")
		t.Logf("round %d: killed after %d orders accepted in all", round+1, n)
		killedWith = n
	}
	// The last run replays what the kills left and finishes cleanly.
	cmd := run("-duration", last.String())
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the last run: %v", err)
	}

	accepted, written := map[string]bool{}, map[string]int{}
	f, err := os.Open(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		what, id, ok := strings.Cut(sc.Text(), " ")
		switch {
		case !ok:
			t.Fatalf("ledger line %q", sc.Text())
		case what == "accepted":
			accepted[id] = true
		case what == "written":
			written[id]++
		default:
			t.Errorf("ledger line %q: nothing fails here", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var missing []string
	dupes, unrecorded := 0, 0
	for id := range accepted {
		if written[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range written {
		if !accepted[id] {
			// Add returned nil, and the kill came before the ledger
			// line: the order was accepted all the same.
			unrecorded++
		}
		dupes += n - 1
	}
	if len(accepted) <= killedWith {
		t.Errorf("the last run accepted nothing: %d orders before it, %d after", killedWith, len(accepted))
	}
	t.Logf("%d rounds: %d orders accepted, %d never written; %d written twice (at least once); %d written whose accepted line a kill cut off", rounds, len(accepted), len(missing), dupes, unrecorded)
	return crashLoss{accepted: len(accepted), missing: missing}
}

// countLines counts the lines of the ledger that begin with what.
func countLines(t *testing.T, path, what string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte(what+" "))
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
