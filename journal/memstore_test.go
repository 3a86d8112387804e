//go:build !muster_journal_log

// Stands in for the Log until it is merged; then this file goes.

package journal_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/musterhq/muster/journal"
)

// memStore is a Store in memory, honouring the contract: IDs unique across
// runs, a byte bound with wait, Finish, and Recover of the items a
// previous run (see restart) left unfinished, oldest first.
type memStore struct {
	mu       sync.Mutex
	run      int
	next     int
	recs     map[journal.ID]memRecord
	previous []journal.ID // unfinished at restart, oldest first: what Recover yields
	bytes    int64
	maxBytes int64
	space    chan struct{}
	closed   bool
	stats    journal.StoreStats
}

type memRecord struct {
	seq      int
	data     []byte
	accepted time.Time
}

func newMemStore(maxBytes int64) *memStore {
	return &memStore{run: 1, recs: map[journal.ID]memRecord{}, maxBytes: maxBytes}
}

// restart is the store a new process opens after this one ended, however
// it ended: what was not finished is recovered by the new one.
func (m *memStore) restart() *memStore {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := &memStore{run: m.run + 1, recs: map[journal.ID]memRecord{}, maxBytes: m.maxBytes}
	for id, r := range m.recs {
		n.recs[id] = r
		n.previous = append(n.previous, id)
		n.bytes += int64(len(r.data))
	}
	slices.SortFunc(n.previous, func(a, b journal.ID) int { return n.recs[a].seq - n.recs[b].seq })
	n.next = m.next
	return n
}

func (m *memStore) Append(ctx context.Context, data []byte, accepted time.Time, wait bool) (journal.ID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.maxBytes > 0 && m.bytes+int64(len(data)) > m.maxBytes {
		if m.closed {
			return "", journal.ErrClosed
		}
		if !wait {
			return "", journal.ErrFull
		}
		if m.space == nil {
			m.space = make(chan struct{})
		}
		space := m.space
		m.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			m.mu.Lock()
			return "", ctx.Err()
		}
		m.mu.Lock()
	}
	if m.closed {
		return "", journal.ErrClosed
	}
	m.next++
	id := journal.ID(fmt.Sprintf("r%d-%d", m.run, m.next))
	m.recs[id] = memRecord{seq: m.next, data: slices.Clone(data), accepted: accepted}
	m.bytes += int64(len(data))
	m.stats.Appended++
	m.stats.Syncs++
	return id, nil
}

func (m *memStore) Finish(ids ...journal.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return journal.ErrClosed
	}
	for _, id := range ids {
		if r, ok := m.recs[id]; ok {
			delete(m.recs, id)
			m.bytes -= int64(len(r.data))
			m.stats.Finished++
		}
	}
	if m.space != nil {
		close(m.space)
		m.space = nil
	}
	return nil
}

func (m *memStore) Recover(ctx context.Context, fn func(journal.Record) error) error {
	for i := 0; ; i++ {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return journal.ErrClosed
		}
		if i >= len(m.previous) {
			m.mu.Unlock()
			return nil
		}
		id := m.previous[i]
		r, ok := m.recs[id]
		if ok {
			m.stats.Recovered++
		}
		m.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
		if !ok {
			continue // finished meanwhile
		}
		if err := fn(journal.Record{ID: id, Data: slices.Clone(r.data), Accepted: r.accepted}); err != nil {
			return err
		}
	}
}

func (m *memStore) Stats() journal.StoreStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Items, s.Bytes, s.MaxBytes = len(m.recs), m.bytes, m.maxBytes
	for _, r := range m.recs {
		if s.Oldest.IsZero() || r.accepted.Before(s.Oldest) {
			s.Oldest = r.accepted
		}
	}
	return s
}

func (m *memStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.space != nil {
		close(m.space)
		m.space = nil
	}
	return nil
}

// ids returns the unfinished IDs, oldest first.
func (m *memStore) ids() []journal.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []journal.ID
	for id := range m.recs {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b journal.ID) int { return m.recs[a].seq - m.recs[b].seq })
	return out
}

var _ journal.Store = (*memStore)(nil)
