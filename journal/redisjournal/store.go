package redisjournal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal"
)

// ErrUnavailable is wrapped by the errors of Append and Finish when Redis
// could not be reached or did not answer within Options.Timeout. The item
// of a failed Append was not acknowledged; it may still have reached Redis
// (a reply lost on the way back), and then it is delivered like any other.
var ErrUnavailable = errors.New("redisjournal: redis unavailable")

// Options configure a [Store]. Client and Name are required; every other
// zero field takes the default its comment gives.
type Options struct {
	// Client is the Redis client (a *redis.Client or a failover client;
	// every key of a journal shares one hash slot, so a cluster client
	// should work too, though only a single server is tested). It is not
	// closed by Close. Give it ContextTimeoutEnabled, so
	// that a round trip ends at Timeout even when Redis hangs, MaxRetries
	// -1 and DialerRetries 1, so that an unreachable Redis fails an Append
	// at once instead of after retries (go-redis's defaults retry a refused
	// dial 5 times, 100 ms apart). [NewClient] sets them.
	Client redis.UniversalClient

	// Name names the journal: the replicas that open a Store with the same
	// Name on the same Redis take over each other's items. Keys are under
	// "muster:journal:{Name}:". It must not contain '{' or '}'.
	Name string

	// HeartbeatInterval is how often a replica tells Redis it is alive and
	// looks for dead replicas. Zero means 1 s.
	HeartbeatInterval time.Duration

	// DeadAfter is how long after its last heartbeat a replica is
	// presumed dead and its items are taken over. It must be at least
	// twice HeartbeatInterval. Zero means 5 HeartbeatIntervals. A replica
	// stalled longer than this (a long GC pause, SIGSTOP, a partition) is
	// taken over while alive: its items may then be delivered twice.
	DeadAfter time.Duration

	// Timeout bounds each round trip to Redis made for a group of Appends,
	// a Finish, a heartbeat or a takeover. Zero means 1 s. Keep it well
	// under DeadAfter: a heartbeat that takes longer than DeadAfter lets
	// the replica be taken for dead.
	Timeout time.Duration

	// MaxGroup is the largest number of Appends sent in one round trip.
	// Zero means 1024.
	MaxGroup int

	// Fallback, when set, keeps what Redis cannot take: an Append that
	// fails with ErrUnavailable is appended to Fallback instead (typically
	// the local journal.Log), with the ID "local:" + Fallback's ID, and
	// Open succeeds with Redis unreachable (the heartbeat keeps trying).
	// Finish sends each ID to its store, Recover also delivers Fallback's
	// unfinished items (of earlier runs of this machine) to the same fn, and
	// Stats adds Fallback's. Items in Fallback are not taken over by other
	// replicas: they wait for this machine's next start. Nil: Append fails
	// when Redis is unavailable. Close does not close Fallback.
	Fallback journal.Store
}

// localPrefix starts the IDs of the items kept by Options.Fallback.
const localPrefix = "local:"

// NewClient returns a Redis client for opt with the options a [Store]
// needs set: ContextTimeoutEnabled, MaxRetries -1 (no retries) and
// DialerRetries 1 (one dial per round trip), so that an Append fails at once
// when Redis is unreachable; opt itself is not changed.
func NewClient(opt *redis.Options) *redis.Client {
	o := *opt
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	return redis.NewClient(&o)
}

// Store is a journal.Store on Redis Streams. Each Store is one replica: it
// appends to a stream of its own and, through Recover, takes over the
// streams of dead replicas of the same journal. Open one per process.
type Store struct {
	opts     Options
	rdb      redis.UniversalClient
	replica  string // this replica's identity, 16 hex digits
	prefix   string // "muster:journal:{name}:"
	registry string // the set of the journal's replicas

	reqs chan *appendReq

	mu     sync.RWMutex // guards closed (read-locked by Append while it queues) and the fields below
	closed bool
	claims map[string]*claim // dead replicas this one took over
	gauges map[string]gauge  // per stream (own and claimed), from the last heartbeat

	recovering atomic.Bool
	healthy    atomic.Bool   // the last heartbeat succeeded
	stop       chan struct{} // closed by Close (or abandon)
	wg         sync.WaitGroup

	appended, finished, recovered, syncs, syncNanos, takeovers, corrupt atomic.Uint64
}

// claim is a dead replica whose stream this replica holds the claim on.
type claim struct {
	lost   bool   // the claim's refresh failed: another replica may hold it now (guarded by Store.mu)
	handed bool   // every item was handed to Recover's fn (Recover's goroutine only)
	next   string // where the delivery resumes, an XRANGE start (Recover's goroutine only)
}

// gauge is what a heartbeat read about one stream.
type gauge struct {
	items  int64
	bytes  int64
	oldest time.Time
}

type appendReq struct {
	data     []byte
	accepted time.Time
	id       journal.ID
	err      error
	done     chan struct{}
}

// Open registers a new replica of the journal opts.Name in Redis and starts
// its heartbeat. Every Open is a new identity with a stream of its own: the
// items of an earlier run of the same process are another replica's, taken
// over by whichever live replica (this one included) finds it dead first.
func Open(ctx context.Context, opts Options) (*Store, error) {
	switch {
	case opts.Client == nil:
		return nil, errors.New("redisjournal: Options.Client is nil")
	case opts.Name == "":
		return nil, errors.New("redisjournal: Options.Name is empty")
	case strings.ContainsAny(opts.Name, "{}"):
		return nil, fmt.Errorf("redisjournal: Options.Name %q must not contain '{' or '}'", opts.Name)
	case opts.HeartbeatInterval < 0, opts.DeadAfter < 0, opts.Timeout < 0, opts.MaxGroup < 0:
		return nil, errors.New("redisjournal: Options.HeartbeatInterval, DeadAfter, Timeout and MaxGroup must not be negative")
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = time.Second
	}
	if opts.DeadAfter == 0 {
		opts.DeadAfter = 5 * opts.HeartbeatInterval
	}
	if opts.DeadAfter < 2*opts.HeartbeatInterval {
		return nil, fmt.Errorf("redisjournal: Options.DeadAfter (%v) must be at least twice HeartbeatInterval (%v)", opts.DeadAfter, opts.HeartbeatInterval)
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	if opts.MaxGroup == 0 {
		opts.MaxGroup = 1024
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand's contract)
	s := &Store{
		opts:    opts,
		rdb:     opts.Client,
		replica: hex.EncodeToString(b[:]),
		prefix:  "muster:journal:{" + opts.Name + "}:",
		reqs:    make(chan *appendReq, opts.MaxGroup),
		claims:  map[string]*claim{},
		gauges:  map[string]gauge{},
		stop:    make(chan struct{}),
	}
	s.registry = s.prefix + "replicas"
	hctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	err := s.heartbeat(hctx)
	cancel()
	if err != nil && (opts.Fallback == nil || !errors.Is(redisError("", err), ErrUnavailable)) {
		return nil, redisError("open", err)
	}
	s.healthy.Store(err == nil)
	s.wg.Add(2)
	go s.commitLoop()
	go s.heartbeatLoop()
	return s, nil
}

// Replica returns this replica's identity: the prefix of the IDs its
// Appends return.
func (s *Store) Replica() string { return s.replica }

func (s *Store) streamKey(replica string) string { return s.prefix + "s:" + replica }
func (s *Store) hbKey(replica string) string     { return s.prefix + "hb:" + replica }
func (s *Store) claimKey(replica string) string  { return s.prefix + "claim:" + replica }

// Append adds data to this replica's stream. Concurrent Appends are sent
// together, in one MULTI/EXEC pipeline (one round trip) per group of up to
// MaxGroup; an Append waits for the group before it. When it returns nil the
// item is in Redis, as durable as Redis's persistence makes it (or, when
// Redis is unavailable and Options.Fallback is set, in the fallback store).
// The store has no byte bound of its own (Redis's maxmemory is the bound: an
// Append Redis refuses fails with its error), so wait is passed to the
// fallback only, and ErrFull comes only from there.
func (s *Store) Append(ctx context.Context, data []byte, accepted time.Time, wait bool) (journal.ID, error) {
	r := &appendReq{data: append([]byte(nil), data...), accepted: accepted, done: make(chan struct{})}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return "", journal.ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.mu.RUnlock()
		return "", ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if r.err == nil || s.opts.Fallback == nil || !errors.Is(r.err, ErrUnavailable) {
		return r.id, r.err
	}
	id, err := s.opts.Fallback.Append(ctx, data, accepted, wait)
	if err != nil {
		return "", fmt.Errorf("%w; and the fallback store failed: %w", r.err, err)
	}
	return localPrefix + id, nil
}

// commitLoop sends the queued Appends, a group per round trip: while one
// round trip is on the wire, the next group queues up.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	group := make([]*appendReq, 0, s.opts.MaxGroup)
	for r := range s.reqs {
		group = append(group[:0], r)
	gather:
		for len(group) < s.opts.MaxGroup {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break gather
				}
				group = append(group, r)
			default:
				break gather
			}
		}
		s.commit(group)
	}
}

func (s *Store) commit(group []*appendReq) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	stream := s.streamKey(s.replica)
	start := time.Now()
	cmds := make([]*redis.StringCmd, len(group))
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range group {
			cmds[i] = p.XAdd(ctx, &redis.XAddArgs{
				Stream: stream,
				Values: []any{"d", r.data, "a", strconv.FormatInt(r.accepted.UnixNano(), 10)},
			})
		}
		return nil
	})
	s.syncs.Add(1)
	s.syncNanos.Add(uint64(time.Since(start)))
	for i, r := range group {
		if err == nil {
			err = cmds[i].Err()
		}
		if err != nil {
			r.err = redisError("append", err)
		} else {
			r.id = journal.ID(s.replica + "/" + cmds[i].Val())
			s.appended.Add(1)
		}
		close(r.done)
	}
}

// redisError wraps err from the operation op: a reply of Redis's as is, any
// other failure (a refused or broken connection, a timeout) with
// ErrUnavailable.
func redisError(op string, err error) error {
	var reply redis.Error
	if errors.As(err, &reply) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("redisjournal: %s: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// parseID splits an ID into the replica whose stream holds it and the
// stream entry's ID.
func parseID(id journal.ID) (replica, entry string, ok bool) {
	replica, entry, ok = strings.Cut(string(id), "/")
	if !ok || len(replica) != 16 {
		return "", "", false
	}
	if _, err := hex.DecodeString(replica); err != nil {
		return "", "", false
	}
	ms, seq, ok := strings.Cut(entry, "-")
	if !ok {
		return "", "", false
	}
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return "", "", false
	}
	if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
		return "", "", false
	}
	return replica, entry, true
}

// Finish deletes the items from their streams (XDEL, one per stream, all in
// one pipelined round trip), whichever replica appended them. Unknown or
// already finished IDs are ignored; an ID that no Store could have returned
// is an error (the valid ones are still finished). When Finish returns nil
// the deletions are in Redis, as durable as its persistence makes them.
func (s *Store) Finish(ids ...journal.ID) error {
	if len(ids) == 0 {
		return nil
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return journal.ErrClosed
	}
	byStream := map[string][]string{}
	var bad []string
	var local []journal.ID
	for _, id := range ids {
		if rest, ok := strings.CutPrefix(string(id), localPrefix); ok && s.opts.Fallback != nil {
			local = append(local, journal.ID(rest))
			continue
		}
		replica, entry, ok := parseID(id)
		if !ok {
			bad = append(bad, strconv.Quote(string(id)))
			continue
		}
		k := s.streamKey(replica)
		byStream[k] = append(byStream[k], entry)
	}
	var err error
	if len(byStream) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		defer cancel()
		cmds := make([]*redis.IntCmd, 0, len(byStream))
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for k, entries := range byStream {
				cmds = append(cmds, p.XDel(ctx, k, entries...))
			}
			return nil
		})
		for _, c := range cmds {
			if c.Err() == nil {
				s.finished.Add(uint64(c.Val()))
			}
		}
		if err != nil {
			err = redisError("finish", err)
		}
	}
	if len(local) > 0 {
		if ferr := s.opts.Fallback.Finish(local...); ferr != nil {
			err = errors.Join(err, fmt.Errorf("redisjournal: finish in the fallback store: %w", ferr))
		}
	}
	if len(bad) > 0 {
		err = errors.Join(err, fmt.Errorf("redisjournal: finish: not an ID of this journal: %s", strings.Join(bad, ", ")))
	}
	return err
}

// Stats returns the store's counters. Items, Bytes and Oldest are those of
// this replica's stream and the streams it took over, as read by its last
// heartbeat (at most HeartbeatInterval old); Bytes is Redis's MEMORY USAGE
// of those streams. Syncs counts the round trips of Append groups. The
// fallback store's stats, if any, are added in.
func (s *Store) Stats() journal.StoreStats {
	st := s.redisStats()
	if s.opts.Fallback == nil {
		return st
	}
	fb := s.opts.Fallback.Stats()
	st.Items += fb.Items
	st.Bytes += fb.Bytes
	st.MaxBytes = fb.MaxBytes
	if !fb.Oldest.IsZero() && (st.Oldest.IsZero() || fb.Oldest.Before(st.Oldest)) {
		st.Oldest = fb.Oldest
	}
	st.Appended += fb.Appended
	st.Finished += fb.Finished
	st.Recovered += fb.Recovered
	st.Syncs += fb.Syncs
	st.SyncTime += fb.SyncTime
	st.Corrupt += fb.Corrupt
	st.Takeovers += fb.Takeovers
	return st
}

func (s *Store) redisStats() journal.StoreStats {
	st := journal.StoreStats{
		Appended:  s.appended.Load(),
		Finished:  s.finished.Load(),
		Recovered: s.recovered.Load(),
		Syncs:     s.syncs.Load(),
		SyncTime:  time.Duration(s.syncNanos.Load()),
		Corrupt:   s.corrupt.Load(),
		Takeovers: s.takeovers.Load(),
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, g := range s.gauges {
		st.Items += int(g.items)
		st.Bytes += g.bytes
		if !g.oldest.IsZero() && (st.Oldest.IsZero() || g.oldest.Before(st.Oldest)) {
			st.Oldest = g.oldest
		}
	}
	return st
}

// Close stops the replica: the Appends queued are sent, the heartbeat stops
// and its key is deleted, so that another replica takes over what is left
// at its next look instead of after DeadAfter; the claims on dead replicas
// are released for the same reason. Items not finished stay in Redis. An
// empty stream is deleted with the replica's registration.
func (s *Store) Close() error {
	if !s.shutdown() {
		return journal.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	keys := []string{s.streamKey(s.replica), s.hbKey(s.replica), s.registry}
	err := goodbyeScript.Run(ctx, s.rdb, keys, s.replica).Err()
	s.mu.Lock()
	claimed := make([]string, 0, len(s.claims))
	for r := range s.claims {
		claimed = append(claimed, r)
	}
	s.claims = map[string]*claim{}
	s.mu.Unlock()
	for _, r := range claimed {
		err = errors.Join(err, releaseScript.Run(ctx, s.rdb, []string{s.claimKey(r)}, s.replica).Err())
	}
	if err != nil {
		return redisError("close", err)
	}
	return nil
}

// shutdown stops accepting Appends, sends those queued and stops the
// background goroutines. It reports false when the store was closed
// already.
func (s *Store) shutdown() bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.closed = true
	close(s.reqs)
	close(s.stop)
	s.mu.Unlock()
	s.wg.Wait()
	return true
}

var _ journal.Store = (*Store)(nil)
