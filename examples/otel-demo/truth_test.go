package main

import (
	"context"
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
