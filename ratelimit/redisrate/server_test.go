package redisrate_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/internal/redistest"
)

// redisServer is a redis-server of the test's own (internal/redistest),
// without persistence, with DEBUG allowed from loopback.
type redisServer struct{ *redistest.Server }

var serverOptions = redistest.Options{Args: []string{"--enable-debug-command", "local"}}

// startRedis starts a redis-server for the test and stops it at cleanup.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	return &redisServer{redistest.Start(t, serverOptions)}
}

// Client returns a client for the server, closed at cleanup.
func (s *redisServer) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}
