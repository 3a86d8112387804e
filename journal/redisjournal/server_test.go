package redisjournal_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/internal/redistest"
	"github.com/musterhq/muster/journal/redisjournal"
)

// redisServer is a redis-server of the test's own (internal/redistest).
type redisServer struct{ *redistest.Server }

// startRedis starts a redis-server for the test and stops it at cleanup;
// with aof, with appendonly yes and appendfsync always.
func startRedis(t testing.TB, aof bool) *redisServer {
	t.Helper()
	return &redisServer{redistest.Start(t, redistest.Options{AOF: aof})}
}

// Client returns a client for the server, made by redisjournal.NewClient,
// closed at cleanup.
func (s *redisServer) Client(t testing.TB) *redis.Client {
	c := redisjournal.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}
