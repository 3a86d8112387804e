package redisjournal

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal"
)

// The scripts that must see and change several keys at once. Every key of a
// journal has the same hash tag, so they run on a cluster too.
var (
	// refreshScript extends a claim if this replica still holds it.
	// KEYS: claim. ARGV: replica, ttl in ms. Returns 1 if extended.
	refreshScript = redis.NewScript(`
if redis.call('get', KEYS[1]) == ARGV[1] then
	return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0`)

	// claimScript claims a dead replica: only while it is registered (a
	// finished takeover unregisters it) and its heartbeat is missing, and
	// only if no other replica holds the claim.
	// KEYS: claim, heartbeat, registry. ARGV: replica (the claimer), dead
	// replica, ttl in ms. Returns 1 if claimed.
	claimScript = redis.NewScript(`
if redis.call('sismember', KEYS[3], ARGV[2]) == 0 or redis.call('exists', KEYS[2]) == 1 then
	return 0
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
	return 1
end
return 0`)

	// releaseScript deletes a claim if this replica holds it.
	// KEYS: claim. ARGV: replica.
	releaseScript = redis.NewScript(`
if redis.call('get', KEYS[1]) == ARGV[1] then
	return redis.call('del', KEYS[1])
end
return 0`)

	// finalizeScript ends a takeover: once the dead replica's stream is
	// empty, it is deleted with the replica's registration and the claim.
	// KEYS: stream, heartbeat, claim, registry. ARGV: replica (the
	// claimer), dead replica. Returns 1 when done, 0 while items are left,
	// -1 when the claim is not ours any more, -2 when the replica is alive
	// again (the claim is released).
	finalizeScript = redis.NewScript(`
if redis.call('get', KEYS[3]) ~= ARGV[1] then
	return -1
end
if redis.call('exists', KEYS[2]) == 1 then
	redis.call('del', KEYS[3])
	return -2
end
if redis.call('xlen', KEYS[1]) > 0 then
	return 0
end
redis.call('del', KEYS[1], KEYS[3])
redis.call('srem', KEYS[4], ARGV[2])
return 1`)

	// goodbyeScript is a replica's Close: its heartbeat is deleted (so that
	// it is taken over at once), and its stream and registration too when
	// nothing is left in it.
	// KEYS: stream, heartbeat, registry. ARGV: replica.
	goodbyeScript = redis.NewScript(`
redis.call('del', KEYS[2])
if redis.call('xlen', KEYS[1]) == 0 then
	redis.call('del', KEYS[1])
	redis.call('srem', KEYS[3], ARGV[1])
	return 1
end
return 0`)
)

// heartbeatLoop refreshes the heartbeat, the claims and the gauges every
// HeartbeatInterval until the store is closed.
func (s *Store) heartbeatLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		err := s.heartbeat(ctx)
		cancel()
		s.healthy.Store(err == nil)
	}
}

// heartbeat is one round trip: this replica's heartbeat key (with a TTL of
// DeadAfter) and registration, the claims it holds, and the gauges of the
// streams it is responsible for. A failure is not logged: it is retried at
// the next interval, and the Appends of the meantime fail on their own.
func (s *Store) heartbeat(ctx context.Context) error {
	s.mu.RLock()
	claimed := make([]string, 0, len(s.claims))
	for r, c := range s.claims {
		if !c.lost {
			claimed = append(claimed, r)
		}
	}
	s.mu.RUnlock()
	streams := append([]string{s.replica}, claimed...)
	type reads struct {
		n     *redis.IntCmd
		first *redis.XMessageSliceCmd
		mem   *redis.IntCmd
	}
	var (
		set     *redis.StatusCmd
		refresh = make([]*redis.Cmd, len(claimed))
		rd      = make([]reads, len(streams))
		ttl     = strconv.FormatInt(s.opts.DeadAfter.Milliseconds(), 10)
	)
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		set = p.Set(ctx, s.hbKey(s.replica), "1", s.opts.DeadAfter)
		p.SAdd(ctx, s.registry, s.replica)
		for i, r := range claimed {
			refresh[i] = refreshScript.Eval(ctx, p, []string{s.claimKey(r)}, s.replica, ttl)
		}
		for i, r := range streams {
			k := s.streamKey(r)
			rd[i] = reads{p.XLen(ctx, k), p.XRangeN(ctx, k, "-", "+", 1), p.MemoryUsage(ctx, k)}
		}
		return nil
	})
	if err := set.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range claimed {
		if n, err := refresh[i].Int(); err == nil && n == 0 {
			if c := s.claims[r]; c != nil {
				c.lost = true // another replica may deliver it now: stop
			}
		}
	}
	for i, r := range streams {
		if r != s.replica && s.claims[r] == nil {
			continue // finished while the heartbeat was on the wire
		}
		var g gauge
		g.items, _ = rd[i].n.Result()
		g.bytes, _ = rd[i].mem.Result() // redis.Nil for an empty stream: 0
		if first, err := rd[i].first.Result(); err == nil && len(first) == 1 {
			if rec, ok := decode("", first[0]); ok {
				g.oldest = rec.Accepted
			}
		}
		s.gauges[r] = g
	}
	return nil
}

// decode makes a record of a stream entry of replica's, reporting false
// for an entry that is not one of ours.
func decode(replica string, m redis.XMessage) (journal.Record, bool) {
	d, ok1 := m.Values["d"].(string)
	a, ok2 := m.Values["a"].(string)
	ns, err := strconv.ParseInt(a, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return journal.Record{}, false
	}
	return journal.Record{
		ID:       journal.ID(replica + "/" + m.ID),
		Data:     []byte(d),
		Accepted: time.Unix(0, ns),
	}, true
}

// Recover hands fn the items of the journal's dead replicas, taking them
// over one replica at a time. Every HeartbeatInterval it looks for
// replicas whose heartbeat key it saw missing at three looks in a row (seen
// by this replica while its own heartbeats succeed, so that a Redis
// restart is not taken for the death of every replica), claims one
// exclusively (SET NX, with a TTL of DeadAfter refreshed by the heartbeat,
// in a script that checks the replica is still registered and silent), and
// calls fn for its items, oldest first. The claimed stream, its
// registration and the claim are deleted once every item in it is finished.
//
// fn runs on Recover's goroutine and may block (backpressure): the claim
// stays refreshed meanwhile. An error from fn stops Recover and is returned;
// the claim is released, so the replica's items are delivered again by the
// next claimer, those fn was given included. Redis failures are retried at
// the next interval, resuming where the delivery stopped. Recover returns
// ctx's error when ctx ends, and journal.ErrClosed when the store is closed.
// One Recover at a time per store.
//
// With Options.Fallback, the fallback's Recover runs alongside, its records'
// IDs prefixed with "local:", and fn is called for one record at a time of
// either; an error from either ends both.
func (s *Store) Recover(ctx context.Context, fn func(journal.Record) error) error {
	if s.isClosed() {
		return journal.ErrClosed
	}
	if !s.recovering.CompareAndSwap(false, true) {
		return errors.New("redisjournal: Recover is already running on this store")
	}
	defer s.recovering.Store(false)
	if s.opts.Fallback == nil {
		return s.watch(ctx, fn)
	}
	var mu sync.Mutex
	one := func(r journal.Record) error { // one record at a time, of either
		mu.Lock()
		defer mu.Unlock()
		return fn(r)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	local, watched := make(chan error, 1), make(chan error, 1)
	go func() {
		local <- s.opts.Fallback.Recover(ctx, func(r journal.Record) error {
			r.ID = localPrefix + r.ID
			return one(r)
		})
	}()
	go func() { watched <- s.watch(ctx, one) }()
	for {
		select {
		case err := <-local:
			local = nil // done (a store that cannot take over returns nil when done)
			if err != nil && ctx.Err() == nil {
				cancel()
				<-watched
				return fmt.Errorf("redisjournal: recovering the fallback store: %w", err)
			}
		case err := <-watched:
			cancel()
			if local != nil {
				<-local
			}
			return err
		}
	}
}

// watch is Recover on Redis: it looks for dead replicas every
// HeartbeatInterval and takes them over, until ctx ends or fn fails.
func (s *Store) watch(ctx context.Context, fn func(journal.Record) error) error {
	suspects := map[string]time.Time{} // replicas seen dead, since when
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		if err := s.scan(ctx, suspects, fn); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stop:
			return journal.ErrClosed
		case <-t.C:
		}
	}
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// scan is one look: it resumes and finalizes the takeovers in progress and
// starts new ones. It returns only fn's errors.
func (s *Store) scan(ctx context.Context, suspects map[string]time.Time, fn func(journal.Record) error) error {
	s.mu.RLock()
	held := make(map[string]*claim, len(s.claims))
	for r, c := range s.claims {
		held[r] = c
	}
	s.mu.RUnlock()
	for r, c := range held {
		if err := s.takeOver(ctx, r, c, fn); err != nil {
			return err
		}
	}
	if !s.healthy.Load() {
		clear(suspects) // our own view of Redis is in doubt: observe again
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	members, err := s.rdb.SMembers(rctx, s.registry).Result()
	if err != nil {
		return nil
	}
	var others []string
	for _, r := range members {
		if _, ok := held[r]; !ok && r != s.replica {
			others = append(others, r)
		}
	}
	alive := make([]*redis.IntCmd, len(others))
	if _, err := s.rdb.Pipelined(rctx, func(p redis.Pipeliner) error {
		for i, r := range others {
			alive[i] = p.Exists(rctx, s.hbKey(r))
		}
		return nil
	}); err != nil {
		return nil
	}
	now := time.Now()
	seen := map[string]bool{}
	for i, r := range others {
		seen[r] = true
		if alive[i].Val() == 1 {
			delete(suspects, r)
			continue
		}
		since, ok := suspects[r]
		if !ok {
			suspects[r] = now
			continue
		}
		if now.Sub(since) < 3*s.opts.HeartbeatInterval/2 {
			continue // seen dead at three looks (two intervals), with the ticker's jitter
		}
		keys := []string{s.claimKey(r), s.hbKey(r), s.registry}
		got, err := claimScript.Run(rctx, s.rdb, keys, s.replica, r, s.opts.DeadAfter.Milliseconds()).Int()
		if err != nil || got != 1 {
			continue // another replica holds it, took it over already, or it is back
		}
		delete(suspects, r)
		c := &claim{next: "-"}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return journal.ErrClosed // the claim expires unrefreshed
		}
		s.claims[r] = c
		s.mu.Unlock()
		s.takeovers.Add(1)
		if err := s.takeOver(ctx, r, c, fn); err != nil {
			return err
		}
	}
	for r := range suspects {
		if !seen[r] {
			delete(suspects, r) // gone from the registry
		}
	}
	return nil
}

// takeOver hands fn the items of the claimed replica r not handed yet
// (resuming after a Redis failure), then, once all were handed, finalizes
// the takeover if they are all finished. It returns only fn's errors.
func (s *Store) takeOver(ctx context.Context, r string, c *claim, fn func(journal.Record) error) error {
	stream := s.streamKey(r)
	for !c.handed {
		s.mu.RLock()
		lost := c.lost
		s.mu.RUnlock()
		if lost || ctx.Err() != nil || s.isClosed() {
			break
		}
		rctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		page, err := s.rdb.XRangeN(rctx, stream, c.next, "+", 256).Result()
		cancel()
		if err != nil {
			return nil // resumed at the next scan
		}
		if len(page) == 0 {
			c.handed = true
			break
		}
		for _, m := range page {
			if ctx.Err() != nil || s.isClosed() {
				return nil
			}
			rec, ok := decode(r, m)
			if !ok {
				s.corrupt.Add(1)
				dctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
				s.rdb.XDel(dctx, stream, m.ID) // it can never be delivered; if this fails, it is counted again by the next claimer
				cancel()
			} else if err := fn(rec); err != nil {
				s.drop(r)
				rctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
				releaseScript.Run(rctx, s.rdb, []string{s.claimKey(r)}, s.replica)
				cancel()
				return err
			} else {
				s.recovered.Add(1)
			}
			c.next = "(" + m.ID
		}
	}
	s.mu.RLock()
	lost := c.lost
	s.mu.RUnlock()
	if lost {
		s.drop(r)
		return nil
	}
	if !c.handed {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	keys := []string{stream, s.hbKey(r), s.claimKey(r), s.registry}
	n, err := finalizeScript.Run(rctx, s.rdb, keys, s.replica, r).Int()
	if err == nil && n != 0 { // done, not ours any more, or the replica is back
		s.drop(r)
	}
	return nil
}

// drop forgets the claim on r and its gauge.
func (s *Store) drop(r string) {
	s.mu.Lock()
	delete(s.claims, r)
	delete(s.gauges, r)
	s.mu.Unlock()
}
