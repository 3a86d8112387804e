package redisjournal_test

import (
	"testing"

	"github.com/musterhq/muster/internal/moduletest"
)

// This module is installable by a user outside the repository, where the
// replace in go.mod does not apply (internal/moduletest): a module of its
// own go gets it and builds a program opening a store for the library's
// journal layer.
func TestInstallableOutsideRepo(t *testing.T) {
	moduletest.Installable(t, "github.com/musterhq/muster/journal/redisjournal", `package main

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/journal/redisjournal"
)

func main() {
	rdb := redisjournal.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	store, err := redisjournal.Open(context.Background(), redisjournal.Options{Client: rdb, Name: "orders"})
	if err != nil {
		return
	}
	defer store.Close()
	var _ journal.Store = store
}
`)
}
