package redisjournal_test

import (
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	redis.SetLogger(quiet{}) // the fault tests' failed dials are expected
	// go-redis probes an unreachable server from a goroutine that sleeps a
	// second between dials and outlives the client's Close by up to that.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
