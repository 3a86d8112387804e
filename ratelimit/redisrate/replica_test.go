package redisrate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit/redisrate"
)

// The test binary doubles as a replica: with replicaEnv set, TestMain runs
// replicaMain instead of the tests. A replica is a muster batcher whose
// producers add items as fast as backpressure lets them, rate limited per
// item by a redisrate.Limiter through middleware/throttle, and reports on
// stdout what it actually fired:
//
//	tick <unix ms> <items fired> <batches failed>   every 100 ms, cumulative
//	mode <unix ms> <mode>                            at every change of mode
const replicaEnv = "MUSTER_REDISRATE_REPLICA"

func replicaMain() int {
	if err := runReplica(); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 1
	}
	return 0
}

func envInt(name string) int {
	v, _ := strconv.Atoi(os.Getenv(name))
	return v
}

// quiet drops go-redis's log lines (a failed dial is expected in the fault
// runs, and counted by the limiter's metrics).
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func runReplica() error {
	redis.SetLogger(quiet{})
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REPLICA_REDIS"), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	l, err := redisrate.New(redisrate.Config{
		Client:            rdb,
		Key:               os.Getenv("REPLICA_KEY"),
		Limit:             rate.Limit(envInt("REPLICA_LIMIT")),
		Burst:             envInt("REPLICA_BURST"),
		Lease:             envInt("REPLICA_LEASE"),
		Timeout:           100 * time.Millisecond,
		HeartbeatInterval: 200 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	defer l.Close()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}

	var fired, failed atomic.Int64
	count := func(next muster.FireFunc[int]) muster.FireFunc[int] {
		return func(ctx context.Context, items []int) error {
			err := next(ctx, items)
			if err != nil {
				failed.Add(1)
			}
			return err
		}
	}
	b := &muster.Batcher[int]{
		Name:                 "replica",
		MaxBatchSize:         20,
		BatchTimeout:         10 * time.Millisecond,
		MaxConcurrentBatches: 4,
		PendingWorkCapacity:  200,
		Fire: muster.Chain(count, throttle.New[int](l, throttle.WithPerItem()))(func(_ context.Context, items []int) error {
			fired.Add(int64(len(items)))
			return nil
		}),
	}
	if err := b.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(envInt("REPLICA_MS"))*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := 0; b.Add(ctx, i) == nil; i++ {
			}
		})
	}
	wg.Go(func() {
		for {
			ch := l.ModeChanged()
			select {
			case <-ch:
				say("mode %d %s", time.Now().UnixMilli(), l.Mode())
			case <-ctx.Done():
				return
			}
		}
	})
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-t.C:
		case <-ctx.Done():
			done = true
		}
		say("tick %d %d %d", time.Now().UnixMilli(), fired.Load(), failed.Load())
	}
	wg.Wait()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := b.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// replica is the parent's view of one replica process.
type replica struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	ticks  []tick
	modes  []modeAt
	exited chan error
	first  chan struct{} // closed at the first tick
}

type tick struct {
	at            time.Time
	fired, failed int64
}

type modeAt struct {
	at   time.Time
	mode string
}

// startReplicas runs n replica processes against addr for d.
func startReplicas(t *testing.T, n int, addr, key string, limit, burst, lease int, d time.Duration) []*replica {
	t.Helper()
	var rs []*replica
	for range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), replicaEnv+"=1",
			"REPLICA_REDIS="+addr, "REPLICA_KEY="+key,
			"REPLICA_LIMIT="+strconv.Itoa(limit), "REPLICA_BURST="+strconv.Itoa(burst),
			"REPLICA_LEASE="+strconv.Itoa(lease), "REPLICA_MS="+strconv.Itoa(int(d.Milliseconds())))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := &replica{cmd: cmd, exited: make(chan error, 1), first: make(chan struct{})}
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				r.parse(sc.Text())
			}
			r.exited <- cmd.Wait()
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		rs = append(rs, r)
	}
	return rs
}

func (r *replica) parse(line string) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return
	}
	ms, _ := strconv.ParseInt(f[1], 10, 64)
	at := time.UnixMilli(ms)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch f[0] {
	case "tick":
		if len(f) != 4 {
			return
		}
		fired, _ := strconv.ParseInt(f[2], 10, 64)
		failed, _ := strconv.ParseInt(f[3], 10, 64)
		if len(r.ticks) == 0 {
			close(r.first)
		}
		r.ticks = append(r.ticks, tick{at, fired, failed})
	case "mode":
		r.modes = append(r.modes, modeAt{at, f[2]})
	}
}

// firedAt is what the replica had fired by at, interpolated between the two
// ticks around it.
func (r *replica) firedAt(at time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var prev tick
	for _, tk := range r.ticks {
		if tk.at.After(at) {
			if prev.at.IsZero() {
				return 0
			}
			f := float64(at.Sub(prev.at)) / float64(tk.at.Sub(prev.at))
			return float64(prev.fired) + f*float64(tk.fired-prev.fired)
		}
		prev = tk
	}
	return float64(prev.fired)
}

// last returns the replica's last tick.
func (r *replica) last() tick {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ticks) == 0 {
		return tick{}
	}
	return r.ticks[len(r.ticks)-1]
}

// modeSince returns the first change to mode at or after since.
func (r *replica) modeSince(mode string, since time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.modes {
		if m.mode == mode && !m.at.Before(since) {
			return m.at, true
		}
	}
	return time.Time{}, false
}

// waitAll waits for every replica's first tick, then returns the time.
func waitStarted(t *testing.T, rs []*replica) time.Time {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for _, r := range rs {
		select {
		case <-r.first:
		case err := <-r.exited:
			t.Fatalf("replica exited before its first tick: %v", err)
		case <-deadline:
			t.Fatal("replicas did not start")
		}
	}
	return time.Now()
}

// waitExited waits for every replica to exit successfully.
func waitExited(t *testing.T, rs []*replica) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for _, r := range rs {
		select {
		case err := <-r.exited:
			if err != nil {
				t.Errorf("replica: %v", err)
			}
		case <-deadline:
			t.Fatal("replicas did not exit")
		}
	}
}

// rates returns each replica's rate (items/s) between from and to.
func rates(rs []*replica, from, to time.Time) []float64 {
	var out []float64
	for _, r := range rs {
		out = append(out, (r.firedAt(to)-r.firedAt(from))/to.Sub(from).Seconds())
	}
	return out
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

func TestAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the cross-process runs take 20 s")
	}
	const quota, replicas = 600, 3
	// Accuracy: three processes share 600 items/s for 20 s under equal
	// load; the aggregate within 5% of the quota, each replica within 20%
	// of its fair share, from what they fired. Once per round trip, and
	// with leases of 30 tokens.
	for _, tc := range []struct {
		name  string
		lease int
	}{{"accuracy", 0}, {"accuracy-leased", 30}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startRedis(t)
			const d = 21 * time.Second
			rs := startReplicas(t, replicas, s.Addr(), "quota", quota, 60, tc.lease, d)
			start := waitStarted(t, rs)
			waitExited(t, rs)
			from, to := start.Add(time.Second), start.Add(d-1500*time.Millisecond)
			if to.Sub(from) < 18*time.Second {
				t.Fatalf("measured only %v", to.Sub(from))
			}
			rr := rates(rs, from, to)
			agg := sum(rr)
			t.Logf("%s: aggregate %.1f items/s over %v (quota %d), replicas %.1f", tc.name, agg, to.Sub(from).Round(time.Millisecond), quota, rr)
			if agg < quota*0.95 || agg > quota*1.05 {
				t.Errorf("aggregate %.1f items/s, want %d ± 5%%", agg, quota)
			}
			for i, r := range rr {
				if fair := float64(quota) / replicas; r < fair*0.8 || r > fair*1.2 {
					t.Errorf("replica %d: %.1f items/s, want %.0f ± 20%%", i, r, fair)
				}
			}
			for i, r := range rs {
				if f := r.last().failed; f != 0 {
					t.Errorf("replica %d: %d batches failed", i, f)
				}
			}
		})
	}

	// Faults: Redis is killed in the middle of a run and started again on
	// the same port.
	t.Run("redis-down", func(t *testing.T) {
		t.Parallel()
		s := startRedis(t)
		const d = 16 * time.Second
		rs := startReplicas(t, replicas, s.Addr(), "quota", quota, 60, 0, d)
		start := waitStarted(t, rs)
		// Let every replica count the others through heartbeats.
		stopAt := start.Add(5 * time.Second)
		time.Sleep(time.Until(stopAt)) // the experiment's schedule, not a synchronisation
		before := rates(rs, start.Add(time.Second), stopAt)
		s.Stop()
		stopped := time.Now()
		restartAt := stopped.Add(5 * time.Second)
		time.Sleep(time.Until(restartAt)) // the schedule: Redis stays down 5 s
		s.Restart()
		restarted := time.Now()
		waitExited(t, rs)
		end := start.Add(d - 500*time.Millisecond)

		for i, r := range rs {
			at, ok := r.modeSince("local", stopped.Add(-100*time.Millisecond))
			if !ok {
				t.Errorf("replica %d never switched to local", i)
				continue
			}
			if took := at.Sub(stopped); took > time.Second {
				t.Errorf("replica %d switched to local %v after Redis stopped, want within 1s", i, took)
			}
			back, ok := r.modeSince("shared", restarted.Add(-100*time.Millisecond))
			if !ok {
				t.Errorf("replica %d never returned to shared", i)
				continue
			}
			t.Logf("replica %d: local %v after the stop, shared %v after the restart", i, at.Sub(stopped).Round(time.Millisecond), back.Sub(restarted).Round(time.Millisecond))
			if f := r.last().failed; f != 0 {
				t.Errorf("replica %d: %d batches failed under fail-open", i, f)
			}
		}
		for sec := start; sec.Before(end); sec = sec.Add(time.Second) {
			t.Logf("t+%v: %.0f items/s", sec.Sub(start).Round(time.Second), sum(rates(rs, sec, sec.Add(time.Second))))
		}
		down := rates(rs, stopped, restarted)
		after := rates(rs, restarted.Add(time.Second), end)
		whole := rates(rs, start, end)
		t.Logf("aggregate items/s: before %.1f, Redis down %.1f %v, after %.1f, whole run %.1f",
			sum(before), sum(down), down, sum(after), sum(whole))
		// Stated tolerance: the quota plus 10% over any window of seconds
		// (a switch overlaps the shared and local buckets briefly), plus the
		// burst over the whole run.
		for name, agg := range map[string]float64{"before": sum(before), "down": sum(down), "after": sum(after)} {
			if agg > quota*1.1 {
				t.Errorf("%s: aggregate %.1f items/s, above the quota %d + 10%%", name, agg, quota)
			}
			if agg < quota*0.8 {
				t.Errorf("%s: aggregate %.1f items/s, far below the quota %d", name, agg, quota)
			}
		}
		if limit := quota*end.Sub(start).Seconds()*1.05 + 60; sum(whole)*end.Sub(start).Seconds() > limit {
			t.Errorf("whole run fired %.0f items, above %.0f", sum(whole)*end.Sub(start).Seconds(), limit)
		}
	})
}
