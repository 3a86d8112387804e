package redisrate_test

import (
	"testing"

	"github.com/musterhq/muster/internal/moduletest"
)

// This module is installable by a user outside the repository, where the
// replace in go.mod does not apply (internal/moduletest): a module of its
// own go gets it and builds a program using it and the library's throttle.
func TestInstallableOutsideRepo(t *testing.T) {
	moduletest.Installable(t, "github.com/musterhq/muster/ratelimit/redisrate", `package main

import (
	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/ratelimit/redisrate"
)

func main() {
	rdb := redisrate.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	quota, err := redisrate.New(redisrate.Config{Client: rdb, Key: "orders", Limit: 10})
	if err != nil {
		panic(err)
	}
	defer quota.Close()
	_ = throttle.New[int](quota)
}
`)
}
