package muster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// checkLocked verifies what the engine's two locks protect, as one
// consistent state: the counters of open, waiting and in-flight items match
// the batches that hold them, readyN mirrors the ready queue, the in-flight
// cap holds, each key's share adds up, and the idle list holds exactly the
// idle keys. It checks the batches' shared link too: a batch in the open
// FIFO is its key's open batch and in no other list; a batch in unstarted
// has left the open FIFO, and unstarted never holds more batches than are
// in flight; the spare and the free batches are in no list and hold
// nothing. It needs both locks.
func (e *engine[K, T]) checkLocked() error {
	if n := int(e.readyN.Load()); n != len(e.ready) {
		return fmt.Errorf("readyN %d, %d batches ready", n, len(e.ready))
	}
	open, inOpen := 0, map[*batch[K, T]]bool{}
	var prev *batch[K, T]
	for b := e.open.head; b != nil; prev, b = b, e.open.next(b) {
		if inOpen[b] {
			return errors.New("the open FIFO loops")
		}
		inOpen[b] = true
		if b.ks.cur != b || b.prev != prev || b.first.IsZero() {
			return fmt.Errorf("open batch %p is not its key's open batch, or its links are wrong", b)
		}
		if len(b.ctxs) != 0 && len(b.ctxs) != b.n {
			return fmt.Errorf("open batch %p: %d items, %d contexts kept", b, b.n, len(b.ctxs))
		}
		open += b.n
	}
	if e.open.tail != prev {
		return errors.New("the open FIFO's tail is wrong")
	}
	for _, ks := range e.keysLocked() {
		if b := ks.cur; b != nil && b.n > 0 && b.first.IsZero() {
			return fmt.Errorf("key %v: open batch with %d items not in the open FIFO", ks.key, b.n)
		}
	}
	if open != e.openItems {
		return fmt.Errorf("openItems %d, open batches hold %d", e.openItems, open)
	}
	ready, waiting, waitingItems := 0, map[*keyState[K, T]]int{}, map[*keyState[K, T]]int{}
	for _, b := range e.ready {
		ready += b.n
		waiting[b.ks]++
		waitingItems[b.ks] += b.n
	}
	if ready != e.readyItems {
		return fmt.Errorf("readyItems %d, ready batches hold %d", e.readyItems, ready)
	}
	if e.inflight < 0 || e.limit > 0 && e.inflight > e.limit || e.flightItems < 0 {
		return fmt.Errorf("%d batches (%d items) in flight, limit %d", e.inflight, e.flightItems, e.limit)
	}
	unstarted := 0
	prev = nil
	for b := e.unstarted.head; b != nil; prev, b = b, e.unstarted.next(b) {
		if unstarted++; inOpen[b] || b.ks.cur == b || b.prev != prev || b.n == 0 {
			return fmt.Errorf("batch %p in unstarted is open, empty, or wrongly linked", b)
		}
	}
	if e.unstarted.tail != prev || unstarted > e.inflight {
		return fmt.Errorf("unstarted's tail is wrong, or %d batches launched and not taken, %d in flight", unstarted, e.inflight)
	}
	for _, b := range append([]*batch[K, T]{e.spare.Load()}, e.free...) {
		if b != nil && (b.prev != nil || b.next != nil || b.n != 0 || inOpen[b] || e.unstarted.head == b || e.unstarted.tail == b) {
			return fmt.Errorf("spare or free batch %p is still linked or holds items", b)
		}
	}
	if len(e.parked) > e.maxParked {
		return fmt.Errorf("%d goroutines parked, at most %d", len(e.parked), e.maxParked)
	}
	if e.keyFn != nil {
		inflight := 0
		for _, ks := range e.keys {
			if ks.waiting != waiting[ks] || ks.waitingItems != waitingItems[ks] {
				return fmt.Errorf("key %v: waiting %d/%d items, ready queue has %d/%d", ks.key, ks.waiting, ks.waitingItems, waiting[ks], waitingItems[ks])
			}
			inflight += ks.inflight
			if ks.idle && (ks.cur != nil || ks.batches.Load() != 0) {
				return fmt.Errorf("key %v idle while it holds %d batches", ks.key, ks.batches.Load())
			}
		}
		if inflight != e.inflight {
			return fmt.Errorf("keys have %d batches in flight, the engine %d", inflight, e.inflight)
		}
		idle := 0
		for ks := e.idleKeys.head; ks != nil; ks = e.idleKeys.next(ks) {
			if !ks.idle || e.keys[ks.key] != ks {
				return fmt.Errorf("key %v in the idle list: idle %v, live %v", ks.key, ks.idle, e.keys[ks.key] == ks)
			}
			idle++
		}
		for _, ks := range e.keys {
			if ks.idle {
				idle--
			}
		}
		if idle != 0 {
			return errors.New("the idle list and the idle keys differ")
		}
		if len(e.keys) > e.maxKeys {
			return fmt.Errorf("%d live keys, MaxKeys %d", len(e.keys), e.maxKeys)
		}
	}
	if e.phase != running && e.open.head != nil {
		return errors.New("a batch is open after the client stopped taking items")
	}
	return nil
}

// keysLocked returns the live key states (the one key without Key).
func (e *engine[K, T]) keysLocked() []*keyState[K, T] {
	if e.keyFn == nil {
		return []*keyState[K, T]{&e.single}
	}
	out := make([]*keyState[K, T], 0, len(e.keys))
	for _, ks := range e.keys {
		out = append(out, ks)
	}
	return out
}

// check takes both locks and checks the engine.
func (e *engine[K, T]) check() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fmu.Lock()
	defer e.fmu.Unlock()
	return e.checkLocked()
}

// TestEngineInvariants runs producers, timers, flushes, drops, evictions and
// failing batches against one engine while a checker takes both locks over
// and over: every state it sees must be consistent, and at the end every
// item is accounted for.
func TestEngineInvariants(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keyed    bool
		overflow Overflow
		perKey   uint
		hooks    bool
	}{
		{"batcher block", false, OverflowBlock, 0, false},
		{"batcher drop-oldest hooks", false, OverflowDropOldest, 0, true},
		{"keyed block", true, OverflowBlock, 0, false},
		{"keyed drop-oldest fair hooks", true, OverflowDropOldest, 8, true},
		{"keyed fail fair", true, OverflowFail, 8, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hooks Observer
			if tc.hooks {
				hooks = &Hooks{
					Added: func(ctx context.Context, _ AddInfo) context.Context { return ctx },
					Done:  func(context.Context, DoneInfo) {},
				}
			}
			fire := func(ctx context.Context, items []int) error {
				if items[0]%5 == 0 {
					return errors.New("failed")
				}
				return nil
			}
			if !tc.keyed {
				exercise(t, &Batcher[int]{MaxBatchSize: 7, BatchTimeout: 50 * time.Microsecond, MaxConcurrentBatches: 3,
					PendingWorkCapacity: 40, Overflow: tc.overflow, Hooks: hooks, Fire: fire})
				return
			}
			exercise(t, &Keyed[int, int]{Key: func(v int) int { return v % 9 },
				MaxBatchSize: 7, BatchTimeout: 50 * time.Microsecond, MaxConcurrentBatches: 3,
				PendingWorkCapacity: 40, MaxPendingPerKey: tc.perKey, Overflow: tc.overflow,
				MaxKeys: 6, KeyIdleTimeout: 20 * time.Microsecond, Hooks: hooks, Fire: fire})
		})
	}
}

// exercise starts k, adds from four producers while a checker checks the
// engine under its locks, and stops it.
func exercise[K comparable](t *testing.T, k *Keyed[K, int]) {
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	e := k.e
	stop := make(chan struct{})
	checked := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				checked <- nil
				return
			default:
			}
			if err := e.check(); err != nil {
				checked <- err
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(p), 1))
			for i := range 3000 {
				_ = k.Add(context.Background(), r.IntN(1000))
				if i%500 == 0 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
					_ = k.Flush(ctx)
					cancel()
				}
			}
		})
	}
	wg.Wait()
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if err := <-checked; err != nil {
		t.Fatal(err)
	}
	if err := e.check(); err != nil {
		t.Fatal(err)
	}
	s := k.Stats()
	if s.Pending != 0 || s.InFlight != 0 || s.Waiting != 0 || s.Fired != s.Done || s.Added+s.Refused != 4*3000 {
		t.Fatalf("stats after Stop %+v", s)
	}
}
