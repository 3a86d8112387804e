package redisjournal_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/journal/redisjournal"
)

// appendN appends n items "item i" to s and returns their IDs.
func appendN(t *testing.T, s interface {
	Append(context.Context, []byte, time.Time, bool) (journal.ID, error)
}, n int) []journal.ID {
	t.Helper()
	ids := make([]journal.ID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for g := range 8 { // concurrent, so that they are group-committed
		wg.Go(func() {
			for i := g; i < n; i += 8 {
				ids[i], errs[i] = s.Append(context.Background(), []byte(fmt.Sprint("item ", i)), time.Now(), true)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	return ids
}

// appendedBefore reports whether the stream entry of a precedes b's (IDs
// "replica/ms-seq" of one replica).
func appendedBefore(a, b journal.ID) bool {
	parse := func(id journal.ID) (ms, seq uint64) {
		_, entry, _ := strings.Cut(string(id), "/")
		m, s, _ := strings.Cut(entry, "-")
		ms, _ = strconv.ParseUint(m, 10, 64)
		seq, _ = strconv.ParseUint(s, 10, 64)
		return ms, seq
	}
	ams, aseq := parse(a)
	bms, bseq := parse(b)
	return ams < bms || ams == bms && aseq < bseq
}

// A replica abandoned without Close (its heartbeat stops, as at a SIGKILL)
// is taken over by another within the stated bound, which delivers its items
// oldest first (in the order of its stream).
func TestTakeoverOfAbandonedReplica(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	a := open(t, rdb, "abandon")
	b := open(t, rdb, "abandon")
	rec := newRecorder()
	recoverUntilCleanup(t, b, rec.fn)

	ids := appendN(t, a, 500)
	if err := a.Finish(ids[:100]...); err != nil {
		t.Fatal(err)
	}
	a.Abandon()
	abandoned := time.Now()
	waitFor(t, 10*time.Second, "the takeover", func() bool { return rec.len() == 400 })
	took := time.Since(abandoned)
	bound := testDeadAfter + 3*testHeartbeat
	t.Logf("abandoned → 400 items delivered by the other replica in %v (bound from the last heartbeat: %v)", took.Round(time.Millisecond), bound)
	if took > bound+time.Second {
		t.Errorf("takeover took %v, beyond the bound %v (+1 s of slack for a loaded machine)", took, bound)
	}
	got := rec.records()
	live := map[journal.ID]bool{}
	for _, id := range ids[100:] {
		live[id] = true
	}
	for i, r := range got {
		if !live[r.ID] {
			t.Fatalf("delivered %q: finished or unknown", r.ID)
		}
		if i > 0 && !appendedBefore(got[i-1].ID, r.ID) {
			t.Fatalf("not in append order at %d: %s after %s", i, r.ID, got[i-1].ID)
		}
	}
	waitFor(t, 5*time.Second, "the gauges of the claimed stream", func() bool {
		st := b.Stats()
		return st.Items == 400 && !st.Oldest.IsZero() && st.Takeovers == 1 && st.Recovered == 400
	})
	var delivered []journal.ID
	for _, r := range got {
		delivered = append(delivered, r.ID)
	}
	if err := b.Finish(delivered...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the finished takeover", func() bool {
		n, _ := rdb.Exists(context.Background(), "muster:journal:{abandon}:s:"+a.Replica(), "muster:journal:{abandon}:claim:"+a.Replica()).Result()
		return n == 0 && b.Stats().Items == 0
	})
}

// Two live replicas race for one dead replica's items: each item is
// delivered by exactly one of them.
func TestTakeoverIsExclusive(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	dead := open(t, rdb, "exclusive")
	ids := appendN(t, dead, 3000)
	dead.Abandon()

	b, c := open(t, rdb, "exclusive"), open(t, rdb, "exclusive")
	var mu sync.Mutex
	by := map[journal.ID][]string{}
	deliver := func(name string) func(journal.Record) error {
		return func(r journal.Record) error {
			mu.Lock()
			by[r.ID] = append(by[r.ID], name)
			mu.Unlock()
			return nil
		}
	}
	recoverUntilCleanup(t, b, deliver("b"))
	recoverUntilCleanup(t, c, deliver("c"))
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(by)
	}
	waitFor(t, 10*time.Second, "the takeover", func() bool { return count() == len(ids) })
	// Once every item is finished, the takeover ends: the dead replica's
	// stream and registration are deleted, so no later takeover can happen.
	if err := b.Finish(ids...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the end of the takeover", func() bool {
		n, _ := rdb.SIsMember(context.Background(), "muster:journal:{exclusive}:replicas", dead.Replica()).Result()
		return !n
	})
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if len(by[id]) != 1 {
			t.Fatalf("%s delivered by %v", id, by[id])
		}
	}
	if got := b.Stats().Takeovers + c.Stats().Takeovers; got != 1 {
		t.Fatalf("%d takeovers, want 1", got)
	}
}

// A replica closed with Close is taken over within a few heartbeat
// intervals, without waiting for its DeadAfter (10 s here), and a closed
// replica with nothing left is simply gone.
func TestCloseIsAGoodbye(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	slow := redisjournal.Options{Client: rdb, Name: "goodbye", HeartbeatInterval: testHeartbeat, DeadAfter: 10 * time.Second}
	empty := openWith(t, slow)
	a := openWith(t, slow)
	appendN(t, a, 10)
	if err := empty.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	members, _ := rdb.SMembers(context.Background(), "muster:journal:{goodbye}:replicas").Result()
	if len(members) != 1 || members[0] != a.Replica() {
		t.Fatalf("registered after Close: %v, want only %s (the one with items left)", members, a.Replica())
	}
	b := open(t, rdb, "goodbye")
	rec := newRecorder()
	start := time.Now()
	recoverUntilCleanup(t, b, rec.fn)
	waitFor(t, 5*time.Second, "the takeover", func() bool { return rec.len() == 10 })
	if took := time.Since(start); took >= 5*time.Second {
		t.Fatalf("takeover after Close took %v: the goodbye was not seen", took)
	}
}

// The duplicate the package documents: a claimer that dies mid-way leaves
// the items it was handing over to the next claimer, and those it had
// handed but not finished are delivered again; the finished ones are not.
func TestClaimerDiesMidway(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	dead := open(t, rdb, "midway")
	ids := appendN(t, dead, 1000)
	dead.Abandon()

	b := open(t, rdb, "midway")
	var handed []journal.ID
	halfway := make(chan struct{})
	release := make(chan struct{})
	recoverUntilCleanup(t, b, func(r journal.Record) error {
		if len(handed) == 100 {
			close(halfway)
			<-release // the claimer is stuck here when it dies
			return nil
		}
		handed = append(handed, r.ID)
		return nil
	})
	t.Cleanup(func() { close(release) }) // before the Recover's cleanup: LIFO
	<-halfway
	if err := b.Finish(handed[:50]...); err != nil {
		t.Fatal(err)
	}
	b.Abandon()

	c := open(t, rdb, "midway")
	rec := newRecorder()
	recoverUntilCleanup(t, c, rec.fn)
	waitFor(t, 10*time.Second, "the second takeover", func() bool { return rec.len() == 950 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	finished := map[journal.ID]bool{}
	for _, id := range handed[:50] {
		finished[id] = true
	}
	for _, id := range ids {
		want := 1
		if finished[id] {
			want = 0
		}
		if rec.count[id] != want {
			t.Fatalf("%s delivered %d times by the second claimer, want %d", id, rec.count[id], want)
		}
	}
	if st := c.Stats(); st.Takeovers != 1 {
		t.Fatalf("takeovers: %d", st.Takeovers)
	}
}
