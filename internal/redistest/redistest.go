// Package redistest runs redis-server processes of a test's own, on free
// loopback ports, for the modules that test against a real Redis
// (ratelimit/redisrate, journal/redisjournal). It uses the standard library
// only, so the library's module gains no dependency.
//
// Without a redis-server ($REDIS_SERVER, else on PATH) a test is skipped
// with a loud message, or fails when MUSTER_REQUIRE_REDIS=1 (CI sets it, so
// that the tests against a real Redis cannot be skipped there by accident).
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireEnv makes a missing redis-server a failure instead of a skip.
const RequireEnv = "MUSTER_REQUIRE_REDIS"

// Options configure a server.
type Options struct {
	// AOF turns on the append-only file, fsynced at every write
	// (appendonly yes, appendfsync always), so that a restart keeps every
	// acknowledged write. Without it the server persists nothing.
	AOF bool
	// Args are more redis-server arguments (e.g. "--enable-debug-command", "local").
	Args []string
}

// Server is a redis-server process in a temporary directory, killed at the
// test's cleanup.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	opts Options
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Find returns the path of redis-server, or skips (fails with
// MUSTER_REQUIRE_REDIS=1) the test when there is none.
func Find(t testing.TB) string {
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
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s=1 and %s", RequireEnv, msg)
	}
	t.Skip(msg)
	return ""
}

// New prepares a server on a free port without starting it (a Redis that is
// down at first): Restart starts it.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: Find(t), dir: t.TempDir(), opts: opts, port: freePort(t)}
	t.Cleanup(s.Stop)
	return s
}

// Start starts a server and waits until it answers PING.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(t, opts)
	var err error
	for range 5 {
		if err = s.start(); err == nil {
			return s
		}
		s.port = freePort(t) // taken meanwhile: try another
	}
	t.Fatal(err)
	return nil
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
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start runs the server on s.port and waits until it answers PING.
func (s *Server) start() error {
	persist := []string{"--appendonly", "no"}
	if s.opts.AOF {
		persist = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--dir", s.dir, "--daemonize", "no"}, persist...)
	s.cmd = exec.Command(s.bin, append(args, s.opts.Args...)...)
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(s.Addr())
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
			s.Stop()
			return fmt.Errorf("redis-server on port %d did not answer PING: %v", s.port, err)
		}
	}
}

// ping sends one inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Stop kills the server and waits for it to exit. It does nothing when the
// server is not running.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server must be able to die
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server (again) on the same port and directory: with
// AOF, what it acknowledged before is still there.
func (s *Server) Restart() {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("restart: %v", err)
		}
	}
}

// Pause stops the process (SIGSTOP): connections stay open and nothing
// answers, as with a server stuck or a network partition.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }
