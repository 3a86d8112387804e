package redisjournal_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/journal/redisjournal"
)

// childEnv, set to a Redis address, makes the test binary a crash-test
// child: a replica of the journal "crash" that appends from many goroutines
// until it is killed.
const childEnv = "REDISJOURNAL_CHILD_REDIS"

// childFallbackEnv, set to a directory, gives the child's Store an
// Options.Fallback: the journal.Log (Synced) in that directory.
const childFallbackEnv = "REDISJOURNAL_CHILD_FALLBACK"

// quiet drops go-redis's log lines.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// childMain appends from 16 goroutines and prints "ack ID" once each
// Append returned nil, and for every third item "finishing ID" before it
// calls Finish and "fin ID" once Finish returned nil, each line in one
// write. With a fallback, a Finish that fails (Redis down) is not fatal:
// the item stays journaled.
func childMain() int {
	redis.SetLogger(quiet{})
	rdb := redisjournal.NewClient(&redis.Options{Addr: os.Getenv(childEnv), DialTimeout: 200 * time.Millisecond})
	hb, dead := crashTimings()
	opts := redisjournal.Options{Client: rdb, Name: "crash", HeartbeatInterval: hb, DeadAfter: dead}
	fallback := os.Getenv(childFallbackEnv)
	if fallback != "" {
		fb, err := journal.Open(fallback, journal.LogOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		opts.Fallback = fb
	}
	s, err := redisjournal.Open(context.Background(), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Stdout.WriteString("replica " + s.Replica() + "\n")
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id, err := s.Append(context.Background(), []byte(fmt.Sprintf("g%d-%d", g, i)), time.Now(), true)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				os.Stdout.WriteString("ack " + string(id) + "\n")
				if i%3 == 0 {
					os.Stdout.WriteString("finishing " + string(id) + "\n")
					if err := s.Finish(id); err != nil {
						if fallback != "" {
							continue
						}
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
					os.Stdout.WriteString("fin " + string(id) + "\n")
				}
			}
		})
	}
	wg.Wait()
	return 0
}

// child is a running crash-test child and what it printed.
type child struct {
	cmd  *exec.Cmd
	read chan struct{} // closed when its stdout reached EOF

	mu        sync.Mutex
	replica   string
	acked     map[journal.ID]bool
	finishing map[journal.ID]bool // Finish called: done or not when the child was killed
	finished  map[journal.ID]bool
}

// startChild starts a crash-test child on the Redis at addr, with env
// ("NAME=value") added to its environment.
func startChild(t *testing.T, addr string, env ...string) *child {
	t.Helper()
	c := &child{read: make(chan struct{}), acked: map[journal.ID]bool{}, finishing: map[journal.ID]bool{}, finished: map[journal.ID]bool{}}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(append(os.Environ(), childEnv+"="+addr), env...)
	c.cmd.Stderr = os.Stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			kind, v, _ := strings.Cut(sc.Text(), " ")
			c.mu.Lock()
			switch kind {
			case "replica":
				c.replica = v
			case "ack":
				c.acked[journal.ID(v)] = true
			case "finishing":
				c.finishing[journal.ID(v)] = true
			case "fin":
				c.finished[journal.ID(v)] = true
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *child) ackedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acked)
}

// crashTimings are the crash test's HeartbeatInterval and DeadAfter: the
// tests' (50 ms, 250 ms), or MUSTER_CRASH_HEARTBEAT and 5 times it (the
// defaults' ratio: MUSTER_CRASH_HEARTBEAT=1s measures the default bound).
func crashTimings() (hb, dead time.Duration) {
	if d, err := time.ParseDuration(os.Getenv("MUSTER_CRASH_HEARTBEAT")); err == nil && d > 0 {
		return d, 5 * d
	}
	return testHeartbeat, testDeadAfter
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// The crash test: a child replica appends from 16 goroutines and is
// SIGKILLed at a random moment; a second replica (this process's Store, not
// a restarted child) takes over and delivers every ID the child
// acknowledged and had not finished, exactly once, and none it had
// finished. MUSTER_CRASH_ROUNDS sets the rounds (3 by default),
// MUSTER_CRASH_SEED the seed, MUSTER_CRASH_HEARTBEAT the timings.
func TestCrashTakeover(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	rounds := envInt("MUSTER_CRASH_ROUNDS", 3)
	seed := uint64(envInt("MUSTER_CRASH_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("%d rounds, MUSTER_CRASH_SEED=%d", rounds, seed)
	rnd := rand.New(rand.NewPCG(seed, 0))

	hb, dead := crashTimings()
	b := openWith(t, redisjournal.Options{Client: rdb, Name: "crash", HeartbeatInterval: hb, DeadAfter: dead})
	rec := newRecorder()
	recoverUntilCleanup(t, b, rec.fn)
	var worst time.Duration
	total := 0
	for round := range rounds {
		c := startChild(t, srv.Addr())
		want := 200 + rnd.IntN(5000)
		waitFor(t, 20*time.Second+dead, "the child's acknowledgements", func() bool { return c.ackedCount() >= want })
		time.Sleep(time.Duration(rnd.IntN(200)) * time.Millisecond) // a random moment to kill it
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		<-c.read
		_ = c.cmd.Wait()

		c.mu.Lock()
		var need []journal.ID
		for id := range c.acked {
			if !c.finishing[id] {
				need = append(need, id)
			}
		}
		c.mu.Unlock()
		delivered := func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, id := range need {
				if rec.count[id] == 0 {
					return false
				}
			}
			return true
		}
		if !waitUntil(10*time.Second+2*dead, delivered) {
			keys, _ := rdb.Keys(context.Background(), "*").Result()
			missing := 0
			rec.mu.Lock()
			for _, id := range need {
				if rec.count[id] == 0 {
					missing++
				}
			}
			rec.mu.Unlock()
			t.Fatalf("round %d: %d of %d acknowledged unfinished items not delivered after 10s; keys %q; stats %+v", round, missing, len(need), keys, b.Stats())
		}
		took := time.Since(killed)
		worst = max(worst, took)

		// Finish what the other replica delivered (it may still be handing
		// over the ambiguous items: finishing, or appended and not
		// acknowledged), until the emptied stream is deleted.
		done := map[journal.ID]bool{}
		waitFor(t, 5*time.Second+2*dead, "the dead replica's stream to be deleted", func() bool {
			var fin []journal.ID
			rec.mu.Lock()
			for id := range rec.count {
				if strings.HasPrefix(string(id), c.replica+"/") && !done[id] {
					fin = append(fin, id)
					done[id] = true
				}
			}
			rec.mu.Unlock()
			for i := 0; i < len(fin); i += 1000 {
				if err := b.Finish(fin[i:min(i+1000, len(fin))]...); err != nil {
					t.Fatal(err)
				}
			}
			n, _ := rdb.Exists(context.Background(), "muster:journal:{crash}:s:"+c.replica).Result()
			return n == 0
		})

		rec.mu.Lock()
		unacked := 0
		for id := range done {
			if n := rec.count[id]; n != 1 {
				t.Errorf("%s delivered %d times", id, n)
			}
			if c.finished[id] {
				t.Errorf("%s delivered after its Finish returned", id)
			}
			if !c.acked[id] {
				unacked++ // appended, but killed before it printed the ack
			}
		}
		rec.mu.Unlock()
		t.Logf("round %d: %d acknowledged, %d finished, %d delivered by the other replica (%d never acknowledged), kill → all delivered in %v",
			round, len(c.acked), len(c.finished), len(done), unacked, took.Round(time.Millisecond))
		total += len(need)
	}
	if st := b.Stats(); st.Takeovers != uint64(rounds) {
		t.Errorf("takeovers: %d, want %d", st.Takeovers, rounds)
	}
	t.Logf("%d rounds, %d acknowledged unfinished items all delivered by the other replica; slowest takeover %v (HeartbeatInterval %v, DeadAfter %v: bound %v)",
		rounds, total, worst.Round(time.Millisecond), hb, dead, dead+3*hb)
}

// TestCrashWithFallback: a replica with Options.Fallback (the embedded Log,
// Synced) appends from 16 goroutines; Redis (appendfsync always) is
// killed, the replica goes on appending to the fallback, and is SIGKILLed.
// The next start on the same machine (the same fallback directory), with
// Redis restarted, delivers every item the replica acknowledged and had not
// finished: those Redis took by takeover, the "local:" ones from the
// fallback.
func TestCrashWithFallback(t *testing.T) {
	srv := startRedis(t, true)
	rdb := srv.Client(t)
	dir := t.TempDir()
	hb, dead := crashTimings()
	c := startChild(t, srv.Addr(), childFallbackEnv+"="+dir)
	local := func() (n int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for id := range c.acked {
			if strings.HasPrefix(string(id), "local:") {
				n++
			}
		}
		return n
	}
	waitFor(t, 20*time.Second, "acknowledgements by Redis", func() bool { return c.ackedCount() >= 500 })
	srv.Stop()
	waitFor(t, 20*time.Second, "acknowledgements by the fallback", func() bool { return local() >= 500 })
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.read
	_ = c.cmd.Wait()

	c.mu.Lock()
	var need []journal.ID
	for id := range c.acked {
		if !c.finishing[id] {
			need = append(need, id)
		}
	}
	c.mu.Unlock()
	fb := openLog(t, dir)
	s := openWith(t, redisjournal.Options{Client: rdb, Name: "crash", HeartbeatInterval: hb, DeadAfter: dead, Fallback: fb})
	rec := newRecorder()
	recoverUntilCleanup(t, s, rec.fn)
	srv.Restart()
	missing := func() (n int) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, id := range need {
			if rec.count[id] == 0 {
				n++
			}
		}
		return n
	}
	if !waitUntil(10*time.Second+2*dead, func() bool { return missing() == 0 }) {
		t.Fatalf("%d of %d acknowledged unfinished items not delivered; stats %+v", missing(), len(need), s.Stats())
	}
	t.Logf("%d acknowledged (%d by the fallback), %d of them unfinished: all delivered", c.ackedCount(), local(), len(need))
}

// A replica stalled longer than DeadAfter (SIGSTOP) is taken over while
// alive; when it comes back its heartbeat makes the claimer let go, it
// keeps its stream and is not taken over again while it lives; killed
// later, it is taken over once more and every acknowledged unfinished item
// has been delivered at least once.
func TestPausedReplicaComesBack(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)
	b := open(t, rdb, "crash")
	rec := newRecorder()
	recoverUntilCleanup(t, b, rec.fn)
	c := startChild(t, srv.Addr())
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); <-c.read; _ = c.cmd.Wait() })
	waitFor(t, 20*time.Second, "the child's acknowledgements", func() bool { return c.ackedCount() >= 500 })
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the takeover of the stalled replica", func() bool { return b.Stats().Takeovers == 1 && rec.len() > 0 })
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	replica := c.replica
	c.mu.Unlock()
	ctx := context.Background()
	waitFor(t, 10*time.Second, "the claimer to let go of the replica that came back", func() bool {
		n, _ := rdb.Exists(ctx, "muster:journal:{crash}:claim:"+replica).Result()
		return n == 0
	})
	resumed := c.ackedCount()
	waitFor(t, 20*time.Second, "the child to go on appending", func() bool { return c.ackedCount() >= resumed+2000 })
	if n := b.Stats().Takeovers; n != 1 {
		t.Fatalf("%d takeovers of a live replica", n)
	}
	if ok, _ := rdb.SIsMember(ctx, "muster:journal:{crash}:replicas", replica).Result(); !ok {
		t.Fatal("the replica that came back lost its registration")
	}

	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.read
	_ = c.cmd.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	waitFor(t, 10*time.Second, "every acknowledged unfinished item", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for id := range c.acked {
			if !c.finishing[id] && rec.count[id] == 0 {
				return false
			}
		}
		return true
	})
	if n := b.Stats().Takeovers; n != 2 {
		t.Fatalf("%d takeovers, want 2", n)
	}
}
