package redisjournal_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal/redisjournal"
)

// requireEnv makes a missing redis-server a failure instead of a skip. CI
// sets it, so that the tests against a real Redis cannot be skipped there by
// accident.
const requireEnv = "MUSTER_REQUIRE_REDIS"

// redisServer is a redis-server process of the test's own, on a free
// loopback port, in a temporary directory: without persistence, or with
// the append-only file fsynced at every write (aof).
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	aof  bool
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// findRedis returns the path of redis-server ($REDIS_SERVER, else on PATH).
// When there is none the test is skipped with a loud message, or fails when
// MUSTER_REQUIRE_REDIS=1.
func findRedis(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	} else if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	msg := fmt.Sprintf("\n%s\n!!! redis-server NOT FOUND: %s is NOT TESTED against a real Redis.\n!!! install it: apt-get update && apt-get install -y redis-server (or set $REDIS_SERVER)\n%s",
		strings.Repeat("!", 78), t.Name(), strings.Repeat("!", 78))
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("%s=1 and %s", requireEnv, msg)
	}
	t.Skip(msg)
	return ""
}

// startRedis starts a redis-server for the test and stops it at cleanup;
// with aof, with appendonly yes and appendfsync always.
func startRedis(t testing.TB, aof bool) *redisServer {
	t.Helper()
	s := &redisServer{t: t, bin: findRedis(t), dir: t.TempDir(), aof: aof}
	var err error
	for range 5 {
		s.port = freePort(t)
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kill)
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Addr is the server's host:port.
func (s *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start runs the server on s.port and waits until it answers PING.
func (s *redisServer) start() error {
	persist := []string{"--appendonly", "no"}
	if s.aof {
		persist = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--dir", s.dir, "--daemonize", "no"}, persist...)
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.Dir = s.dir
	out, err := os.Create(s.dir + "/redis.log")
	if err != nil {
		return err
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		out.Close()
		return err
	}
	done := make(chan struct{})
	s.done = done
	go func() { s.cmd.Wait(); out.Close(); close(done) }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(s.dir + "/redis.log")
			return fmt.Errorf("redis-server on port %d exited: %s", s.port, log)
		case <-time.After(20 * time.Millisecond): // poll the condition, with the deadline below
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on port %d did not answer PING: %v", s.port, err)
		}
	}
}

// Stop kills the server and waits for it to exit.
func (s *redisServer) Stop() { s.kill() }

func (s *redisServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server must be able to die
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server again on the same port.
func (s *redisServer) Restart() {
	s.t.Helper()
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err = s.start(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("restart: %v", err)
		}
	}
}

// Client returns a client for the server, made by redisjournal.NewClient,
// closed at cleanup.
func (s *redisServer) Client(t testing.TB) *redis.Client {
	c := redisjournal.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}
