package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestQueueAndAcksTellTheTruth: the queue's capacity is PendingWorkCapacity,
// shared by the regions (the banner and the progress line say -capacity,
// not -capacity x regions); and the orders whose outcome a request's
// deadline did not see are accounted for later in the summary (each written
// or failed), so that "not known by the request deadline" does not read as
// lost.
func TestQueueAndAcksTellTheTruth(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	code := runDemo(context.Background(), []string{
		"-duration", "2s", "-metrics-addr", "", "-traces", "", "-progress", "250ms", "-cycle", "0",
		"-capacity", "37", "-ack-share", "1",
		// Below the 50 ms BatchTimeout: most outcomes come after it.
		"-request-timeout", "20ms",
	}, &stdout, &stderr, nil)
	out := stdout.String()
	if code != 0 {
		t.Fatalf("exit code %d; stdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	if !strings.Contains(out, "; shared: queue 37, 4 in flight") {
		t.Errorf("the banner does not say the queue of 37 is shared:\n%s", out)
	}
	queues := regexp.MustCompile(`queue +\d+/(\d+)`).FindAllStringSubmatch(out, -1)
	if len(queues) == 0 {
		t.Fatalf("no progress line:\n%s", out)
	}
	for _, q := range queues {
		if q[1] != "37" {
			t.Errorf("progress line's queue %q, want a capacity of 37:\n%s", q[0], out)
			break
		}
	}
	m := regexp.MustCompile(`not known by the request deadline (\d+) \(answered 202; later written (\d+), failed (\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no acks line with the later outcomes:\n%s", out)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	pending, written, failed := n(m[1]), n(m[2]), n(m[3])
	if pending == 0 {
		t.Fatalf("no outcome came after a 20ms deadline:\n%s", out)
	}
	if written+failed != pending {
		t.Errorf("%d outcomes not known by the deadline, but %d written + %d failed later:\n%s", pending, written, failed, out)
	}
}

// TestLedgerAccountsForEveryOrder: after a clean run, with or without the
// journal, every order the ledger says was accepted is written or dead
// (failed for good: half of orders-db's attempts fail here, so some orders
// exhaust their retries), each once.
func TestLedgerAccountsForEveryOrder(t *testing.T) {
	for _, journaled := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "journal"}[journaled], func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ledgerPath := filepath.Join(dir, "ledger")
			args := []string{"-duration", "2s", "-metrics-addr", "", "-traces", "", "-progress", "0", "-cycle", "0",
				"-failure-rate", "0.5", "-ledger", ledgerPath}
			if journaled {
				args = append(args, "-journal", filepath.Join(dir, "journal"))
			}
			var stdout, stderr syncBuffer
			if code := runDemo(context.Background(), args, &stdout, &stderr, nil); code != 0 {
				t.Fatalf("exit code %d; stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			b, err := os.ReadFile(ledgerPath)
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]map[string]int{"accepted": {}, "written": {}, "dead": {}}
			for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				what, id, _ := strings.Cut(l, " ")
				if count[what] == nil {
					t.Fatalf("ledger line %q", l)
				}
				count[what][id]++
			}
			for id := range count["accepted"] {
				if n := count["written"][id] + count["dead"][id]; n != 1 {
					t.Errorf("order %s: written %d times, dead %d times", id, count["written"][id], count["dead"][id])
				}
			}
			if len(count["accepted"]) == 0 || len(count["dead"]) == 0 {
				t.Errorf("%d orders accepted, %d dead: want some of each", len(count["accepted"]), len(count["dead"]))
			}
			if journaled != strings.Contains(stdout.String(), "  journal   ") {
				t.Errorf("journaled %v, summary:\n%s", journaled, stdout.String())
			}
		})
	}
}
