package redisjournal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/journal/redisjournal"
)

// The contract: Append returns IDs of this replica's stream, Finish removes
// items for good, and what a closed replica left is recovered by another,
// oldest first, with its data and acceptance time; the emptied stream is
// then deleted with its registration.
func TestAppendFinishRecover(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	ctx := context.Background()
	a := open(t, rdb, "contract")

	base := time.Unix(1_700_000_000, 123456789)
	var ids []journal.ID
	for i := range 3 {
		id, err := a.Append(ctx, []byte(fmt.Sprintf("item %d", i)), base.Add(time.Duration(i)*time.Second), false)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(id), a.Replica()+"/") {
			t.Fatalf("ID %q is not of replica %s", id, a.Replica())
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] || ids[1] == ids[2] {
		t.Fatalf("IDs not unique: %q", ids)
	}
	if err := a.Finish(ids[1]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the heartbeat's gauges", func() bool {
		st := a.Stats()
		return st.Items == 2 && st.Oldest.Equal(base) && st.Bytes > 0
	})
	st := a.Stats()
	if st.Appended != 3 || st.Finished != 1 || st.Syncs == 0 || st.Syncs > 3 || st.SyncTime <= 0 {
		t.Fatalf("stats: %+v", st)
	}
	// Unknown IDs are ignored; IDs no store could return are an error.
	if err := a.Finish(ids[1], journal.ID(a.Replica()+"/1-0")); err != nil {
		t.Fatalf("finish of unknown IDs: %v", err)
	}
	if err := a.Finish("nonsense", ids[1]); err == nil || !strings.Contains(err.Error(), `"nonsense"`) {
		t.Fatalf("finish of a malformed ID: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, []byte("late"), time.Now(), false); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := a.Finish(ids[0]); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("Finish after Close: %v", err)
	}
	if err := a.Close(); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}

	b := open(t, rdb, "contract")
	rec := newRecorder()
	recoverUntilCleanup(t, b, rec.fn)
	waitFor(t, 5*time.Second, "the closed replica's items", func() bool { return rec.len() == 2 })
	got := rec.records()
	for i, want := range []int{0, 2} {
		r := got[i]
		if r.ID != ids[want] || string(r.Data) != fmt.Sprintf("item %d", want) || !r.Accepted.Equal(base.Add(time.Duration(want)*time.Second)) {
			t.Errorf("record %d: %q %q %v, want item %d", i, r.ID, r.Data, r.Accepted, want)
		}
	}
	if err := b.Finish(ids[0], ids[2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the emptied stream to be deleted", func() bool {
		members, _ := rdb.SMembers(ctx, "muster:journal:{contract}:replicas").Result()
		n, _ := rdb.Exists(ctx, "muster:journal:{contract}:s:"+a.Replica()).Result()
		return n == 0 && len(members) == 1 && members[0] == b.Replica()
	})
	if st := b.Stats(); st.Takeovers != 1 || st.Recovered != 2 || st.Finished != 2 {
		t.Fatalf("recovering replica's stats: %+v", st)
	}
	if err := b.Recover(ctx, rec.fn); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Recover: %v", err)
	}
}

func TestOpenOptions(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, tc := range []struct {
		opts redisjournal.Options
		want string
	}{
		{redisjournal.Options{Name: "x"}, "Client is nil"},
		{redisjournal.Options{Client: rdb}, "Name is empty"},
		{redisjournal.Options{Client: rdb, Name: "a{b}"}, "must not contain"},
		{redisjournal.Options{Client: rdb, Name: "x", Timeout: -1}, "must not be negative"},
		{redisjournal.Options{Client: rdb, Name: "x", HeartbeatInterval: time.Second, DeadAfter: time.Second}, "at least twice"},
	} {
		if _, err := redisjournal.Open(context.Background(), tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v): %v, want %q", tc.opts, err, tc.want)
		}
	}
}

// pipelineCounter is a go-redis hook counting the pipelines that append
// (XADD) and the XADDs in each; the first such pipeline waits for hold to be
// closed.
type pipelineCounter struct {
	mu      sync.Mutex
	groups  []int
	entered chan struct{}
	hold    chan struct{}
	first   atomic.Bool
}

func (h *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}

func (h *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, c := range cmds {
			if c.Name() == "xadd" {
				n++
			}
		}
		if n > 0 {
			h.mu.Lock()
			h.groups = append(h.groups, n)
			h.mu.Unlock()
			if h.first.CompareAndSwap(false, true) {
				close(h.entered)
				<-h.hold
			}
		}
		return next(ctx, cmds)
	}
}

// Appends made while a group is on the wire go together in the next one:
// one round trip for the first Append, one for the 50 queued behind it.
func TestGroupCommit(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	h := &pipelineCounter{entered: make(chan struct{}), hold: make(chan struct{})}
	rdb.AddHook(h)
	s := open(t, rdb, "group")
	ctx := context.Background()

	var wg sync.WaitGroup
	ids := make([]journal.ID, 51)
	errs := make([]error, 51)
	wg.Go(func() { ids[0], errs[0] = s.Append(ctx, []byte("first"), time.Now(), false) })
	<-h.entered
	for i := 1; i <= 50; i++ {
		wg.Go(func() { ids[i], errs[i] = s.Append(ctx, []byte("queued"), time.Now(), false) })
	}
	waitFor(t, 5*time.Second, "50 queued Appends", func() bool { return s.Queued() == 50 })
	close(h.hold)
	wg.Wait()
	seen := map[journal.ID]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		seen[ids[i]] = true
	}
	if len(seen) != 51 {
		t.Fatalf("%d distinct IDs, want 51", len(seen))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if fmt.Sprint(h.groups) != "[1 50]" {
		t.Fatalf("XADDs per pipeline: %v, want [1 50]", h.groups)
	}
	if st := s.Stats(); st.Syncs != 2 || st.Appended != 51 {
		t.Fatalf("stats: %+v", st)
	}
	if n, err := rdb.XLen(ctx, "muster:journal:{group}:s:"+s.Replica()).Result(); err != nil || n != 51 {
		t.Fatalf("XLEN: %d, %v", n, err)
	}
}

// NewClient sets the fail-fast options on a copy (TestRedisDown shows their
// effect: a refused connection fails an Append at once). go-redis reports
// MaxRetries -1 as 0, no retries.
func TestNewClient(t *testing.T) {
	opt := &redis.Options{Addr: "127.0.0.1:1", MaxRetries: 3}
	c := redisjournal.NewClient(opt)
	defer c.Close()
	got := c.Options()
	if !got.ContextTimeoutEnabled || got.MaxRetries != 0 || got.DialerRetries != 1 || got.Addr != opt.Addr {
		t.Fatalf("options: ContextTimeoutEnabled %v, MaxRetries %d, DialerRetries %d, Addr %q",
			got.ContextTimeoutEnabled, got.MaxRetries, got.DialerRetries, got.Addr)
	}
	if opt.MaxRetries != 3 || opt.ContextTimeoutEnabled {
		t.Fatal("NewClient changed its argument")
	}
}
