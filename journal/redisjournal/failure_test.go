package redisjournal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/journal/redisjournal"
)

// With Redis down, Append fails at once with ErrUnavailable (nothing was
// acknowledged, so nothing acknowledged is lost), Finish too; once Redis is
// back the same store appends again.
func TestRedisDown(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	s := open(t, rdb, "down")
	ctx := context.Background()
	id, err := s.Append(ctx, []byte("before"), time.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	_, err = s.Append(ctx, []byte("while down"), time.Now(), false)
	if !errors.Is(err, redisjournal.ErrUnavailable) {
		t.Fatalf("Append with Redis down: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 250*time.Millisecond {
		t.Errorf("Append took %v to fail a refused connection: not failing fast", took)
	}
	t.Logf("Append with Redis down: %v after %v", err, time.Since(start).Round(time.Microsecond))
	if err := s.Finish(id); !errors.Is(err, redisjournal.ErrUnavailable) {
		t.Fatalf("Finish with Redis down: %v, want ErrUnavailable", err)
	}
	if st := s.Stats(); st.Appended != 1 {
		t.Fatalf("appended %d, want 1", st.Appended)
	}
	srv.Restart() // without persistence: a fresh, empty Redis
	waitFor(t, 5*time.Second, "Append to work again", func() bool {
		_, err := s.Append(ctx, []byte("after"), time.Now(), false)
		return err == nil
	})
}

// A Redis with appendfsync always, killed (SIGKILL) and restarted, still has
// every item acknowledged before, and not finished: the replica that
// appended them is taken over after the restart and they are delivered; the
// finished ones stay finished.
func TestRedisRestartWithAOF(t *testing.T) {
	srv := startRedis(t, true)
	rdb := srv.Client(t)
	a := open(t, rdb, "aof")
	ids := appendN(t, a, 300)
	if err := a.Finish(ids[:100]...); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Restart()
	// The replica carries on over the restarted Redis.
	waitFor(t, 5*time.Second, "Append to work again", func() bool {
		id, err := a.Append(context.Background(), []byte("after restart"), time.Now(), false)
		if err == nil {
			ids = append(ids, id)
		}
		return err == nil
	})
	a.Abandon()

	b := open(t, rdb, "aof")
	rec := newRecorder()
	recoverUntilCleanup(t, b, rec.fn)
	want := ids[100:]
	waitFor(t, 10*time.Second, "the items kept across the restart", func() bool { return rec.len() == len(want) })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, id := range want {
		if rec.count[id] != 1 {
			t.Fatalf("%s delivered %d times", id, rec.count[id])
		}
	}
	for _, id := range ids[:100] {
		if rec.count[id] != 0 {
			t.Fatalf("finished %s delivered after the restart", id)
		}
	}
}

// A Redis with appendfsync always, SIGKILLed while 16 goroutines append,
// keeps every item whose Append returned nil: after its restart, another
// replica's takeover delivers each of them, exactly once.
func TestRedisKilledWhileAppendingWithAOF(t *testing.T) {
	srv := startRedis(t, true)
	rdb := srv.Client(t)
	a := open(t, rdb, "aofkill")
	var (
		mu     sync.Mutex
		acked  []journal.ID
		failed int
		wg     sync.WaitGroup
	)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id, err := a.Append(context.Background(), []byte(fmt.Sprintf("g%d-%d", g, i)), time.Now(), false)
				mu.Lock()
				if err != nil {
					failed++
					mu.Unlock()
					return // Redis was killed: this goroutine stops at its first failure
				}
				acked = append(acked, id)
				mu.Unlock()
			}
		})
	}
	waitFor(t, 20*time.Second, "1000 acknowledged Appends", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 1000
	})
	srv.Stop() // SIGKILL, with Appends in flight
	wg.Wait()
	if failed != 16 {
		t.Fatalf("%d of 16 appenders saw Redis die", failed)
	}
	srv.Restart()
	a.Abandon()

	b := open(t, rdb, "aofkill")
	rec := newRecorder()
	recoverUntilCleanup(t, b, rec.fn)
	delivered := func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, id := range acked {
			if rec.count[id] == 0 {
				return false
			}
		}
		return true
	}
	waitFor(t, 10*time.Second, "every acknowledged item after the restart", delivered)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, id := range acked {
		if n := rec.count[id]; n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	t.Logf("%d acknowledged before the SIGKILL of Redis, all delivered after its restart (%d delivered in all)", len(acked), len(rec.count))
}

// A store whose Redis is gone at Open fails clearly.
func TestOpenWithRedisDown(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	srv.Stop()
	_, err := redisjournal.Open(context.Background(), redisjournal.Options{Client: rdb, Name: "x"})
	if !errors.Is(err, redisjournal.ErrUnavailable) {
		t.Fatalf("Open with Redis down: %v", err)
	}
	var _ journal.Store = (*redisjournal.Store)(nil)
}

// With Options.Fallback (here the embedded journal.Log), what Redis cannot
// take goes to the fallback store: Appends succeed while Redis is down, with
// "local:" IDs that Finish routes back; after a crash, the next start
// recovers them from the fallback, and, once Redis is back (with AOF), the
// items acknowledged by Redis before it went down, by takeover.
func TestFallbackWhileRedisIsDown(t *testing.T) {
	srv := startRedis(t, true)
	rdb := srv.Client(t)
	ctx := context.Background()
	dir := t.TempDir()
	fb := openLog(t, dir)
	s := openWith(t, redisjournal.Options{Client: rdb, Name: "main", HeartbeatInterval: testHeartbeat, DeadAfter: testDeadAfter, Fallback: fb})
	inRedis, err := s.Append(ctx, []byte("in redis"), time.Now(), false)
	if err != nil || strings.HasPrefix(string(inRedis), "local:") {
		t.Fatalf("Append with Redis up: %q, %v", inRedis, err)
	}
	srv.Stop()
	var kept []journal.ID
	for _, d := range []string{"kept 1", "kept 2"} {
		id, err := s.Append(ctx, []byte(d), time.Now(), false)
		if err != nil || !strings.HasPrefix(string(id), "local:") {
			t.Fatalf("Append with Redis down: %q, %v; want an ID of the fallback", id, err)
		}
		kept = append(kept, id)
	}
	if err := s.Finish(kept[0]); err != nil {
		t.Fatalf("Finish of a fallback ID: %v", err)
	}
	if st := fb.Stats(); st.Appended != 2 || st.Finished != 1 {
		t.Fatalf("fallback stats: %+v", st)
	}
	if st := s.Stats(); st.Appended != 3 || st.Finished != 1 {
		t.Fatalf("stats with the fallback's added: %+v", st)
	}
	s.Abandon() // the process stops without a goodbye
	if err := fb.Close(); err != nil {
		t.Fatal(err)
	}

	// The next start, Redis still down: Open succeeds, and the fallback's
	// item is recovered.
	fb2 := openLog(t, dir)
	s2 := openWith(t, redisjournal.Options{Client: rdb, Name: "main", HeartbeatInterval: testHeartbeat, DeadAfter: testDeadAfter, Fallback: fb2})
	rec := newRecorder()
	recoverUntilCleanup(t, s2, rec.fn)
	waitFor(t, 10*time.Second, "the fallback's item", func() bool { return rec.len() == 1 })
	if got := rec.records()[0]; got.ID != kept[1] || string(got.Data) != "kept 2" {
		t.Fatalf("recovered %q %q, want %q", got.ID, got.Data, kept[1])
	}
	srv.Restart()
	waitFor(t, 10*time.Second, "the item acknowledged by Redis before it went down", func() bool { return rec.len() == 2 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.count[inRedis] != 1 || rec.count[kept[0]] != 0 {
		t.Fatalf("recovered %v", rec.count)
	}
}

// openLog opens the embedded journal.Log in dir, closed at cleanup.
func openLog(t *testing.T, dir string) *journal.Log {
	t.Helper()
	l, err := journal.Open(dir, journal.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
