package journal

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A segment is one file of the log, named after the sequence number of its
// first item ("%016x.seg"): the items of a segment have the consecutive
// sequence numbers first, first+1, ..., first+n-1, so that a bitset indexed
// by seq-first says which are finished (one bit per item in memory, for as
// long as the segment lives).
type segment struct {
	first    uint64
	n        uint64   // items in the segment, lost ones included
	finished []uint64 // bit i: item first+i finished (or lost to corruption)
	live     int      // items neither finished nor lost
	size     int64    // bytes of the file
	oldest   int64    // earliest acceptance time of its items, Unix nanoseconds (0: none)
	targets  []uint64 // first of each older segment that finish records in this one refer to
	deleted  bool
}

const segSuffix = ".seg"

// maxLostGap bounds the items a damaged segment end is counted to have
// lost from the gap to the next segment's name (and the bits kept for
// them): more means the names are not this log's.
const maxLostGap = 1 << 26

func segName(first uint64) string { return fmt.Sprintf("%016x%s", first, segSuffix) }

// parseSegName returns the first sequence number of a segment file name.
func parseSegName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(hex, 16, 64)
	return v, err == nil
}

// add appends k items (live, or lost when lost is true).
func (s *segment) add(k uint64, accepted int64, lost bool) {
	for range k {
		i := s.n
		s.n++
		if int(i/64) >= len(s.finished) {
			s.finished = append(s.finished, 0)
		}
		if lost {
			s.finished[i/64] |= 1 << (i % 64)
		} else {
			s.live++
		}
	}
	if k > 0 && !lost && (s.oldest == 0 || accepted < s.oldest) {
		s.oldest = accepted
	}
}

// finish marks seq finished; it reports whether seq was a live item of s.
func (s *segment) finish(seq uint64) bool {
	if seq < s.first || seq-s.first >= s.n {
		return false
	}
	i := seq - s.first
	w, b := i/64, uint64(1)<<(i%64)
	if s.finished[w]&b != 0 {
		return false
	}
	s.finished[w] |= b
	s.live--
	return true
}

// isFinished reports whether seq is finished or lost (or not in s).
func (s *segment) isFinished(seq uint64) bool {
	if seq < s.first || seq-s.first >= s.n {
		return true
	}
	i := seq - s.first
	return s.finished[i/64]&(1<<(i%64)) != 0
}

func (s *segment) addTarget(first uint64) {
	if first != s.first && !slices.Contains(s.targets, first) {
		s.targets = append(s.targets, first)
	}
}

// findSegment returns the segment of segs (sorted by first) that holds seq,
// or nil.
func findSegment(segs []*segment, seq uint64) *segment {
	i, found := slices.BinarySearchFunc(segs, seq, func(s *segment, seq uint64) int {
		switch {
		case s.first > seq:
			return 1
		case s.first == seq:
			return 0
		}
		return -1
	})
	if !found {
		i--
	}
	if i < 0 {
		return nil
	}
	if s := segs[i]; seq-s.first < s.n {
		return s
	}
	return nil
}

// scanOutcome is what opening one existing segment found.
type scanOutcome struct {
	seg       *segment // nil if quarantined or removed
	next      uint64   // the least sequence number no record of the file can hold
	lost      int      // records lost to corruption (reported to OnCorrupt)
	truncated int64    // bytes of a torn tail cut off (last segment only)
}

// scanSegment reads the segment file name (whose first item is first), at
// Open. limit bounds the sequence numbers of its items (the next segment's
// first; 0 for the last segment); exact says that its items end just before
// limit (the next segment's header says so). Finish records mark items of segs (the segments scanned before,
// in order) and of the segment itself. last says whether it is the newest
// segment: only there is a bad tail a torn write, cut off; elsewhere it is
// corruption.
func (l *Log) scanSegment(name string, first, limit uint64, exact bool, segs []*segment, last bool) (scanOutcome, error) {
	path := filepath.Join(l.dir, name)
	f, err := l.fs.OpenFile(path, osRDWR, 0)
	if err != nil {
		return scanOutcome{}, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return scanOutcome{}, err
	}
	hdr := make([]byte, segHeaderSize)
	var h segHeader
	hok := false
	if size >= segHeaderSize {
		if _, err := f.ReadAt(hdr, 0); err != nil {
			return scanOutcome{}, err
		}
		h, hok = decodeSegHeader(hdr)
	}
	if !hok || h.first != first {
		if last && size < segHeaderSize {
			// A segment whose creation was torn: it holds no record.
			f.Close()
			return scanOutcome{next: first}, l.fs.Remove(path)
		}
		// The header is unreadable: keep the file for inspection, count
		// what it held (the gap to the next segment, or else the intact
		// item records in it).
		out := scanOutcome{next: first + uint64(size)/minItemRecord + 1}
		if exact && limit >= first && limit-first <= maxLostGap {
			out.lost = int(limit - first)
		} else {
			sc := newRecordScanner(f, size, l.scanBuf)
			for {
				r, _, _, ok := sc.next()
				if !ok {
					break
				}
				if r.kind == recItem {
					out.lost++
				}
			}
			out.lost = max(out.lost, 1)
		}
		f.Close()
		if err := l.fs.Rename(path, path+".corrupt"); err != nil {
			return scanOutcome{}, err
		}
		return out, nil
	}

	s := &segment{first: first, size: size}
	all := append(segs[:len(segs):len(segs)], s)
	lost := 0
	// lose marks k items after the last one seen lost; a bad region that
	// lost no item lost a finish record (its items will be delivered again).
	lose := func(k uint64) {
		if k == 0 {
			lost++
			return
		}
		s.add(k, 0, true)
		lost += int(k)
	}
	sc := newRecordScanner(f, size, l.scanBuf)
	for {
		r, off, badFrom, ok := sc.next()
		if !ok {
			if sc.err != nil {
				return scanOutcome{}, fmt.Errorf("journal: reading %s: %w", path, sc.err)
			}
			out := scanOutcome{seg: s}
			end := s.first + s.n
			if badFrom < 0 && size > sc.off {
				// Only zeros after the records: the preallocated tail of
				// a segment being written when the log stopped. Give the
				// disk back (a tail a crash keeps reads as zeros again).
				if err := f.Truncate(sc.off); err != nil {
					return scanOutcome{}, err
				}
				s.size = sc.off
			}
			switch {
			case last && badFrom >= 0:
				// A torn tail: the writes of a group commit that never
				// completed. Cut it off.
				if err := f.Truncate(sc.off); err != nil {
					return scanOutcome{}, err
				}
				if err := f.Sync(); err != nil {
					return scanOutcome{}, err
				}
				out.truncated = size - sc.off
				s.size = sc.off
			case last:
			case exact && limit > end && limit-end <= maxLostGap:
				// A damaged or truncated end: the gap to where the next
				// segment says it ended is what it lost.
				lose(limit - end)
			case exact && limit == end && badFrom >= 0:
				lose(0) // no item lost: a finish record
			case badFrom >= 0:
				// Where the next segment cannot say: an estimate from the
				// bytes lost and the segment's mean record size.
				mean := int64(minItemRecord)
				if s.n > 0 {
					mean = max(mean, (badFrom-segHeaderSize)/int64(s.n))
				}
				lose(uint64((sc.end - badFrom + mean - 1) / mean))
			}
			// Sequence numbers the lost or torn bytes might have held are
			// never given again.
			out.next = s.first + s.n + uint64(max(sc.end-sc.off, 0))/minItemRecord + 1
			out.lost = lost
			return out, nil
		}
		if r.kind == recItem {
			want := s.first + s.n
			// Items missing before this one: only where a bad region was
			// skipped, and no more than its bytes could hold.
			var room uint64
			if badFrom >= 0 {
				room = uint64(off-badFrom)/minItemRecord + 1
			}
			if r.seq < want || r.seq-want > room || (limit != 0 && r.seq >= limit) {
				lost++ // a record that checks but is out of place
				continue
			}
			if badFrom >= 0 {
				lose(r.seq - want)
			}
			s.add(1, r.accepted, false)
			continue
		}
		if badFrom >= 0 {
			lose(0)
		}
		for i := range len(r.data) / 8 {
			q := r.finishSeq(i)
			if t := findSegment(all, q); t != nil && t.finish(q) {
				s.addTarget(t.first)
			}
		}
	}
}

// oldestTime converts Unix nanoseconds to a time (zero for 0).
func oldestTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
