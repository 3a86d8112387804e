package redisrate_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/internal/redistest"
	"github.com/musterhq/muster/ratelimit/redisrate"
)

// NewClient sets the options the limiter needs on a copy of the caller's.
func TestNewClientOptions(t *testing.T) {
	opt := &redis.Options{Addr: "127.0.0.1:1", MaxRetries: 3}
	c := redisrate.NewClient(opt)
	defer c.Close()
	got := c.Options()
	if !got.ContextTimeoutEnabled || got.MaxRetries != 0 || got.DialerRetries != 1 || got.Addr != opt.Addr {
		t.Errorf("options: ContextTimeoutEnabled %v, MaxRetries %d (after -1), DialerRetries %d, Addr %q",
			got.ContextTimeoutEnabled, got.MaxRetries, got.DialerRetries, got.Addr)
	}
	if opt.ContextTimeoutEnabled || opt.MaxRetries != 3 || opt.DialerRetries != 0 {
		t.Errorf("the caller's options were changed: %+v", opt)
	}
}

// logLines captures go-redis's (global) log lines that mention addr.
type logLines struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func (l *logLines) Printf(_ context.Context, format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	if !strings.Contains(line, l.addr) {
		return
	}
	l.mu.Lock()
	l.got = append(l.got, line)
	l.mu.Unlock()
}

func (l *logLines) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// A replica started while Redis is down, with Replicas unset, cannot know
// it is alone: it falls back to Limit/InitialReplicas, not the whole quota,
// until a heartbeat counts the replicas once Redis is up. Its probes while
// Redis is down do not make go-redis log a failed dial each time: only the
// first failure is logged. (Not parallel: go-redis's logger is global.)
func TestRedisDownAtStart(t *testing.T) {
	s := &redisServer{redistest.New(t, serverOptions)} // not started yet
	logs := &logLines{addr: s.Addr()}
	redis.SetLogger(logs)
	t.Cleanup(func() { redis.SetLogger(quiet{}) })

	var dials atomic.Int64
	client := redisrate.NewClient(&redis.Options{
		Addr:     s.Addr(),
		PoolSize: 100, // go-redis stops dialing (and logging) after PoolSize failed dials: not before the test ends
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	})
	t.Cleanup(func() { client.Close() })

	const limit = 800
	l := newLimiter(t, nil, redisrate.Config{Client: client, Limit: limit, Burst: 8,
		HeartbeatInterval: 20 * time.Millisecond, Timeout: 50 * time.Millisecond})
	waitMode(t, l, redisrate.ModeLocal, 5*time.Second)
	if n := l.Replicas(); n != redisrate.DefaultInitialReplicas {
		t.Fatalf("Replicas() = %d while no heartbeat has succeeded, want %d", n, redisrate.DefaultInitialReplicas)
	}
	// The fallback serves this replica's assumed share, 800/8 = 100/s with
	// a burst of 1: 30 tokens take about 0.29 s (the whole quota: 0.03 s).
	ctx := context.Background()
	start := time.Now()
	for range 30 {
		if err := l.WaitN(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("30 tokens in %v while Redis was down at start: more than 1/%d of the quota", took, redisrate.DefaultInitialReplicas)
	}
	// Many probes (each a dial), and nothing more in go-redis's log than
	// the round trip that failed first (the heartbeat at start, which tried
	// its pipeline pool and its main pool).
	first := len(logs.lines())
	from := dials.Load()
	deadline := time.Now().Add(10 * time.Second) // 20 probes at 20 ms take 0.4 s
	for dials.Load() < from+20 {
		if time.Now().After(deadline) {
			t.Fatalf("%d dials in 10 s while Redis was down: the limiter stopped probing", dials.Load()-from)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter the probes drive, with a deadline
	}
	if got := logs.lines(); len(got) > first || first > 2 {
		t.Errorf("go-redis logged %d lines, %d of them during %d probes while Redis was down, want none then:\n%s",
			len(got), len(got)-first, dials.Load()-from, strings.Join(got, "\n"))
	}

	// Redis comes up: the limiter returns to the shared quota and counts
	// the replicas (itself).
	s.Restart()
	waitMode(t, l, redisrate.ModeShared, 5*time.Second)
	if n := l.Replicas(); n != 1 {
		t.Errorf("Replicas() = %d once Redis is up, want 1 (counted)", n)
	}
}
