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
	goleak.VerifyTestMain(m)
}
