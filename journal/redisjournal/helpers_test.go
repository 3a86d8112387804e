package redisjournal_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/journal/redisjournal"
)

// Test timings: a replica is presumed dead 250 ms after its last heartbeat.
const (
	testHeartbeat = 50 * time.Millisecond
	testDeadAfter = 250 * time.Millisecond
)

// open opens a Store of the journal name on rdb with the test timings,
// closed at cleanup unless the test closed or abandoned it.
func open(t testing.TB, rdb redis.UniversalClient, name string) *redisjournal.Store {
	t.Helper()
	return openWith(t, redisjournal.Options{
		Client: rdb, Name: name, HeartbeatInterval: testHeartbeat, DeadAfter: testDeadAfter,
	})
}

// openWith opens a Store with opts, closed at cleanup unless the test
// closed or abandoned it.
func openWith(t testing.TB, opts redisjournal.Options) *redisjournal.Store {
	t.Helper()
	s, err := redisjournal.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, journal.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// waitUntil polls cond until it holds or d passed, and reports whether it
// holds.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
	}
	return true
}

// recorder collects what Recover hands its fn.
type recorder struct {
	mu    sync.Mutex
	recs  []journal.Record
	count map[journal.ID]int
}

func newRecorder() *recorder { return &recorder{count: map[journal.ID]int{}} }

func (r *recorder) fn(rec journal.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.Data = append([]byte(nil), rec.Data...)
	r.recs = append(r.recs, rec)
	r.count[rec.ID]++
	return nil
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.count)
}

func (r *recorder) records() []journal.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]journal.Record(nil), r.recs...)
}

// recover runs s.Recover(fn) until the test ends, and checks it returned
// only for that.
func recoverUntilCleanup(t testing.TB, s *redisjournal.Store, fn func(journal.Record) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Recover(ctx, fn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, journal.ErrClosed) {
			t.Errorf("Recover: %v", err)
		}
	})
}
