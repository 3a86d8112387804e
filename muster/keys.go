package muster

import "time"

// keyFitsLocked reports whether keyLocked would find or make key's state.
// It needs mu.
func (e *engine[K, T]) keyFitsLocked(key K) bool {
	if e.keyFn == nil || e.idleKeys.head != nil || len(e.keys) < e.maxKeys {
		return true
	}
	_, ok := e.keys[key]
	return ok
}

// keyLocked finds or makes the state of key. It needs mu.
func (e *engine[K, T]) keyLocked(key K) (*keyState[K, T], error) {
	ks := e.lastKey
	if ks == nil || ks.key != key { // measure refused the keys not equal to themselves
		ks = e.keys[key]
	}
	if ks != nil {
		if ks.idle {
			e.unidleLocked(ks)
		}
		e.lastKey = ks
		return ks, nil
	}
	if len(e.keys) >= e.maxKeys {
		if e.idleKeys.head == nil {
			return nil, ErrTooManyKeys
		}
		e.evictLocked(e.idleKeys.head)
	}
	ks = &keyState[K, T]{key: key}
	e.keys[key] = ks
	e.lastKey = ks
	return ks, nil
}

// idleIfEmptyLocked puts a key that holds nothing at the end of the idle
// list, from which the janitor and MaxKeys evict. It needs mu.
func (e *engine[K, T]) idleIfEmptyLocked(ks *keyState[K, T]) {
	if e.keyFn == nil || ks.idle || ks.batches.Load() > 0 || e.keys[ks.key] != ks {
		return
	}
	ks.idle = true
	ks.idleSince = time.Now()
	e.idleKeys.pushBack(ks)
	if !e.janitorSet && e.phase == running {
		e.janitorSet = true
		e.janitor.Reset(e.idle)
	}
}

// unidleLocked takes ks out of the idle list. It needs mu.
func (e *engine[K, T]) unidleLocked(ks *keyState[K, T]) {
	e.idleKeys.remove(ks)
	ks.idle = false
}

// evictLocked forgets an idle key. It needs mu.
func (e *engine[K, T]) evictLocked(ks *keyState[K, T]) {
	e.unidleLocked(ks)
	delete(e.keys, ks.key)
	if e.lastKey == ks {
		e.lastKey = nil
	}
}

// onJanitor evicts the keys idle for KeyIdleTimeout, oldest first. It
// takes mu.
func (e *engine[K, T]) onJanitor() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.janitorSet = false
	now := time.Now()
	for ks := e.idleKeys.head; ks != nil; ks = e.idleKeys.head {
		if wait := e.idle - now.Sub(ks.idleSince); wait > 0 {
			if e.phase == running {
				e.janitorSet = true
				e.janitor.Reset(wait)
			}
			return
		}
		e.evictLocked(ks)
	}
}

// KeyStats is one key's share of a Keyed client, from TopKeys: what an
// operator looks at to find the key (the tenant) that holds the capacity.
type KeyStats[K comparable] struct {
	Key K
	// Pending counts the key's items taken and not yet fired: in its open
	// batch and its batches waiting for a slot. MaxPendingPerKey bounds it.
	Pending  int
	Waiting  int // the key's batches waiting for an in-flight slot
	InFlight int // the key's batches between Fired and Done
}

func (ks *keyState[K, T]) statsLocked() KeyStats[K] {
	return KeyStats[K]{Key: ks.key, Pending: ks.pendingLocked(), Waiting: ks.waiting, InFlight: ks.inflight}
}

// topKeys returns the n keys holding the most. It takes both locks while it
// reads every live key, keeping the n first in order as it goes (an
// insertion into n entries: n is small, a dashboard's top-k).
func (e *engine[K, T]) topKeys(n int) []KeyStats[K] {
	if n <= 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fmu.Lock()
	defer e.fmu.Unlock()
	top := make([]KeyStats[K], 0, min(n, len(e.keys)))
	for _, ks := range e.keys {
		s := ks.statsLocked()
		if s.Pending == 0 && s.Waiting == 0 && s.InFlight == 0 || len(top) == n && !holdsMore(s, top[n-1]) {
			continue
		}
		if len(top) < n {
			top = append(top, s)
		} else {
			top[n-1] = s
		}
		for i := len(top) - 1; i > 0 && holdsMore(top[i], top[i-1]); i-- {
			top[i], top[i-1] = top[i-1], top[i]
		}
	}
	return top
}

// topKeysAny is topKeys for ClientInfo, whose observers do not know K.
func (e *engine[K, T]) topKeysAny(n int) []KeyStats[any] {
	top := e.topKeys(n)
	if top == nil {
		return nil
	}
	out := make([]KeyStats[any], len(top))
	for i, s := range top {
		out[i] = KeyStats[any]{Key: s.Key, Pending: s.Pending, Waiting: s.Waiting, InFlight: s.InFlight}
	}
	return out
}

// holdsMore orders TopKeys: by Pending, then Waiting, then InFlight.
func holdsMore[K comparable](a, b KeyStats[K]) bool {
	if a.Pending != b.Pending {
		return a.Pending > b.Pending
	}
	if a.Waiting != b.Waiting {
		return a.Waiting > b.Waiting
	}
	return a.InFlight > b.InFlight
}
