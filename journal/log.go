package journal

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Durability is how much an item survives once Append (or Finish) returned
// for it; the Log's doc has the table. A process crash (panic, OOM kill,
// SIGKILL) loses nothing at any level: every Append that returned had passed
// its record to write(2). The levels differ on a machine crash (power loss,
// kernel panic, a VM killed), where only what was fdatasync'd survives.
// Synced assumes a disk that honours flushes. The zero value, Synced, is the
// default.
type Durability int

const (
	// Synced: Append returns once its record is written and fdatasync'd,
	// in a group commit shared with the concurrent Appends: it survives
	// power loss. Nothing that returned is lost.
	Synced Durability = iota
	// Interval: Append returns once its record is written; the log
	// fdatasyncs every SyncInterval. A process crash loses nothing; a
	// machine crash loses at most the items appended (and finishes made)
	// in the last SyncInterval before it, plus those of an fdatasync it
	// interrupted.
	Interval
	// Process: Append returns once its record is written with write(2);
	// the log never fsyncs. A process crash loses nothing; a machine crash
	// loses whatever the operating system had not yet written back (on
	// Linux, dirty pages older than 30 s by default are written, so up to
	// about that).
	Process
)

func (d Durability) String() string {
	switch d {
	case Synced:
		return "synced"
	case Interval:
		return "interval"
	case Process:
		return "process"
	}
	return "Durability(" + strconv.Itoa(int(d)) + ")"
}

// Defaults of LogOptions.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultSyncInterval = 500 * time.Millisecond
	minSegmentBytes     = 4 << 10
	// preallocBytes is how far ahead of its writes the active segment is
	// zero-filled at Synced and Interval (see Log).
	preallocBytes = 4 << 20
)

// zeros is what a segment is preallocated with (in the binary's zeroed
// data, not on the heap).
var zeros [64 << 10]byte

// LogOptions configure a Log. The zero value is a synced log of 64 MiB
// segments without a byte bound.
type LogOptions struct {
	// Durability is when Append and Finish return; default Synced.
	Durability Durability

	// SyncInterval is the period of the fdatasync at Interval (ignored at
	// the other levels): the loss window of a machine crash. Default
	// DefaultSyncInterval (500 ms, Vector's default).
	SyncInterval time.Duration

	// SegmentBytes is the size at which the log starts a new segment file;
	// default DefaultSegmentBytes (64 MiB), at least 4 KiB. A segment is
	// deleted once all its items are finished, so disk is reclaimed a
	// segment at a time. With MaxBytes set, segments are at most a quarter
	// of it. An item must fit in one segment.
	SegmentBytes int64

	// MaxBytes bounds the bytes of the log's files (records queued
	// included); 0 means no bound, otherwise at least 16 KiB. It counts
	// the bytes written, as StoreStats.Bytes does: the zeros that
	// preallocate the active segment (see Log) are not counted, so that
	// the files hold at most min(SegmentBytes, 4 MiB) more. At the bound,
	// Append returns ErrFull or waits, as its caller asked. Finish records
	// are always written, even past the bound: they are what frees it.
	MaxBytes int64

	// OnCorrupt, if not nil, is called during Open for each segment in
	// which records were found corrupt and skipped, with the segment file's
	// name and the number of records lost (items, and finish records whose
	// items will be delivered again). The same count is in
	// StoreStats.Corrupt.
	OnCorrupt func(segment string, lost int)

	fs fsys // nil: the operating system's
}

// Log is a Store kept in segment files in one directory of the local disk
// (standard library only, no server): the embedded journal.
//
// It is a log, not a database. Each Append writes one record (a length, a
// CRC32C over the header and payload, the item's sequence number, its
// acceptance time and its data) at the end of the active segment; Finish
// writes a small record naming the items finished. Concurrent Appends and
// Finishes are written together by one committer goroutine: one write and,
// at Synced, one fdatasync for everything queued while the previous commit
// ran (group commit), so that throughput grows with the number of
// producers while each waits about one fsync. At Synced, a commit waits for
// the callers the previous one woke (a quarter of that commit's time, 1 ms
// at most) so that one fsync serves them all; at the other levels the
// committer yields once before a write so that it carries every ready
// producer's record. Throughput at Synced is therefore about the number of
// concurrent callers per fsync time: many producers (or a layer that
// appends for many at once) are what make it high.
//
// The levels of Durability (set in LogOptions):
//
//	level     survives                      loss window on a machine crash      cost per group commit
//	Synced    power loss, kernel panic       none                               one write + one fdatasync
//	Interval  process crash                 the last SyncInterval (500 ms)      one write; an fdatasync per SyncInterval
//	Process   process crash (kill -9, OOM)   until the OS wrote back (~30 s)    one write
//
// At every level Finish is as durable as Append: a finish lost to a crash
// makes its items recovered and delivered again (at least once).
//
// IDs are "<identity>-<run>-<n>": the log's random identity (16 hex digits,
// made at the first Open and kept in the file journal.id), the number of
// the Open that appended the item, and its number within that run. They are
// the same after any number of restarts, and never given twice, even after
// a machine crash lost records at Interval or Process (each Open starts a
// new run).
//
// Open recovers: it reads every segment, checking every record. The torn
// tail of the newest segment (the writes of a group commit a crash
// interrupted: a partial record or a bad checksum with nothing valid after
// it) is cut off; it held no item whose Append returned at Synced. A corrupt
// record anywhere else is skipped and counted (StoreStats.Corrupt,
// LogOptions.OnCorrupt): the scan resumes at the next offset where a valid
// record starts, and sequence numbers tell how many items were lost. A
// segment whose header is unreadable is renamed to *.corrupt and counted,
// never deleted (only a newest segment shorter than a header, whose
// creation a crash cut short, is removed: it holds no record). Items lost
// are counted exactly from the sequence numbers, where the segment after
// the damaged one was written right after it; otherwise (a segment deleted
// between them) a damaged end is estimated from its bytes, and a clean
// truncation (or zeroing) at a record boundary goes unseen. Nothing in the files can
// make Open panic.
//
// Preallocation: at Synced and Interval, the active segment is zero-filled
// up to 4 MiB (or the segment's size) ahead of its writes, and records are
// written in place over the zeros. An fdatasync then commits the data
// alone, not a new file size and block allocation (a journal commit on
// ext4): it made the group commit at Synced 2.3 times cheaper (median of
// 5 paired rounds, 1.5 to 4.8) on the disk of BENCHMARKS.md. fallocate and ftruncate do not help: their blocks
// still need converting (or allocating) at the first write. A segment no
// longer written is cut back to its records; Open reads the zeros after
// the last record as the end of the segment, not as a torn write, and cuts
// them off.
//
// Disk: a segment file is deleted once every item in it is finished (and
// it is not the one being written), so disk is reclaimed a segment at a
// time; a segment whose finish records finish items of an older segment
// still on disk is kept until that one goes, so that no finish is
// forgotten by a restart.
//
// Memory: the log keeps, for each segment file, one bit per item in it
// (finished or not) and a few words: for 100-byte items (125-byte records),
// one bit per 125 bytes on disk, 64 KiB per 64 MiB segment, 1/1000 of the
// backlog. Recover reads one segment at a time through a 1 MiB window;
// nothing is memory-mapped.
//
// A Log is safe for concurrent use. A directory holds one open Log at a
// time: on Linux, Open takes a lock on it (flock on the file journal.lock,
// released by Close or the process's end) and fails if another Log holds
// it; elsewhere nothing checks it.
type Log struct {
	dir      string
	fs       fsys
	opts     LogOptions
	segBytes int64
	idPrefix string // the identity in hex, and "-"
	scanBuf  []byte // Open's scan window
	kick     chan struct{}
	done     chan struct{} // closed when the committer returns

	recoverMu sync.Mutex // one Recover at a time
	lock      io.Closer  // the directory's lock, held until Close

	// The committer's own (and Open's, and Close's after the committer).
	active fsFile // the newest segment's file, written at pos
	pos    int64  // where the next record goes in active
	zeroed int64  // active's bytes, records and preallocated zeros
	dirty  bool   // Interval: written since the last fdatasync

	mu          sync.Mutex
	closing     bool
	err         error // a write or sync failed: the log takes no more
	next        uint64
	cur         *logBatch
	spare       []byte
	segs        []*segment // oldest first; the last is the active one
	used        int64
	room        chan struct{} // closed (and replaced) when room was freed
	recoverEnd  uint64        // items before it are of earlier runs
	recoverNext uint64        // Recover handed out (or skipped) the items before it
	group       int           // callers a commit waits for at Synced (see commitLoop)
	linger      time.Duration // for at most this long
	maxLinger   time.Duration // a quarter of the last commit's time, up to this
	stats       StoreStats
}

// logBatch is one group commit: the records queued while the previous one
// was written.
type logBatch struct {
	buf     []byte
	first   uint64 // sequence number of its first item
	items   uint64
	calls   int // Appends and Finishes waiting on it
	oldest  int64
	targets []uint64 // segments (by first) whose items its finish records finish
	finish  bool
	done    chan struct{} // closed once written (and synced)
	err     error
}

const (
	osRDWR   = os.O_RDWR
	idFile   = "journal.id"
	lockFile = "journal.lock"
	idMagic  = "MJID0001"
	idLength = 8 + 8 + 8 + 4
)

// Open opens the log in dir (created if missing), recovering what earlier
// runs left there (see Log), and starts a new segment for this run's items.
func Open(dir string, opts LogOptions) (*Log, error) {
	if opts.Durability < Synced || opts.Durability > Process {
		return nil, fmt.Errorf("journal: unknown durability %d", int(opts.Durability))
	}
	if opts.SyncInterval < 0 || opts.SegmentBytes < 0 || opts.MaxBytes < 0 {
		return nil, errors.New("journal: negative SyncInterval, SegmentBytes or MaxBytes")
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.SegmentBytes < minSegmentBytes {
		return nil, fmt.Errorf("journal: SegmentBytes %d below the minimum %d", opts.SegmentBytes, minSegmentBytes)
	}
	segBytes := opts.SegmentBytes
	if opts.MaxBytes > 0 {
		if opts.MaxBytes < 4*minSegmentBytes {
			return nil, fmt.Errorf("journal: MaxBytes %d below the minimum %d", opts.MaxBytes, 4*minSegmentBytes)
		}
		segBytes = min(segBytes, opts.MaxBytes/4)
	}
	if opts.fs == nil {
		opts.fs = osFS{}
	}
	l := &Log{
		dir:       dir,
		fs:        opts.fs,
		opts:      opts,
		segBytes:  segBytes,
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		room:      make(chan struct{}),
		scanBuf:   make([]byte, 0, scanBuffer),
		maxLinger: time.Millisecond,
	}
	l.stats.MaxBytes = opts.MaxBytes
	if err := l.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	lock, err := l.fs.Lock(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	l.lock = lock
	run, err := l.loadIdentity()
	if err == nil {
		err = l.recoverFiles(run)
	}
	if err != nil {
		lock.Close()
		return nil, err
	}
	l.scanBuf = nil
	l.cur = &logBatch{done: make(chan struct{})}
	l.collect()
	go l.commitLoop()
	return l, nil
}

// loadIdentity reads (or makes) the log's identity, counts this Open as a
// new run and returns its number.
func (l *Log) loadIdentity() (uint64, error) {
	path := filepath.Join(l.dir, idFile)
	var id [8]byte
	var run uint64
	b, err := l.readFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, err := rand.Read(id[:]); err != nil {
			return 0, fmt.Errorf("journal: %w", err)
		}
	case err != nil:
		return 0, fmt.Errorf("journal: %w", err)
	default:
		if len(b) != idLength || string(b[:8]) != idMagic ||
			binary.LittleEndian.Uint32(b[24:]) != crc32.Checksum(b[:24], castagnoli) {
			return 0, fmt.Errorf("journal: %s is corrupt: move it away to give the log a new identity (the items kept get new IDs)", path)
		}
		copy(id[:], b[8:16])
		run = binary.LittleEndian.Uint64(b[16:])
	}
	run++
	out := append([]byte(idMagic), id[:]...)
	out = binary.LittleEndian.AppendUint64(out, run)
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
	if err := l.writeFileAtomic(path, out); err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	l.idPrefix = hex.EncodeToString(id[:]) + "-"
	return run, nil
}

func (l *Log) readFile(path string) ([]byte, error) {
	f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	if n > 1<<10 {
		n = 1 << 10 // an identity file is 28 bytes: more is corrupt anyway
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// writeFileAtomic replaces path with b durably: a temporary file written
// and synced, renamed over it, the directory synced.
func (l *Log) writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := l.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, path)
	}
	if err == nil {
		err = l.fs.SyncDir(l.dir)
	}
	return err
}

// recoverFiles scans the segments of earlier runs and creates this run's.
func (l *Log) recoverFiles(run uint64) error {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	type file struct {
		name  string
		first uint64
	}
	var files []file
	for _, n := range names {
		if first, ok := parseSegName(n); ok {
			files = append(files, file{n, first})
		}
	}
	slices.SortFunc(files, func(a, b file) int {
		if a.first < b.first {
			return -1
		}
		if a.first > b.first {
			return 1
		}
		return 0
	})
	next := max(run<<32, 1)
	var prev segHeader // the newest segment's first and end, for the next header; 0: unknown
	for i, f := range files {
		var limit uint64
		exact := false
		if i+1 < len(files) {
			nf := files[i+1]
			limit = nf.first
			if h, ok := l.readSegHeader(nf.name); ok && h.prevFirst == f.first && h.prevEnd >= f.first && h.prevEnd <= nf.first {
				limit, exact = h.prevEnd, true
			}
		}
		out, err := l.scanSegment(f.name, f.first, limit, exact, l.segs, i == len(files)-1)
		if err != nil {
			return fmt.Errorf("journal: recovering %s: %w", f.name, err)
		}
		if out.lost > 0 {
			l.stats.Corrupt += uint64(out.lost)
			if l.opts.OnCorrupt != nil {
				l.opts.OnCorrupt(f.name, out.lost)
			}
		}
		prev = segHeader{}
		if out.seg != nil {
			l.segs = append(l.segs, out.seg)
			l.used += out.seg.size
			prev = segHeader{prevFirst: out.seg.first, prevEnd: out.seg.first + out.seg.n}
		}
		next = max(next, out.next)
	}
	l.recoverEnd = next
	l.next = next
	f, err := l.createSegment(segHeader{first: next, prevFirst: prev.prevFirst, prevEnd: prev.prevEnd})
	if err != nil {
		return err
	}
	l.active, l.pos, l.zeroed = f, segHeaderSize, segHeaderSize
	l.segs = append(l.segs, &segment{first: next, size: segHeaderSize})
	l.used += segHeaderSize
	return nil
}

// readSegHeader reads the header of segment file name.
func (l *Log) readSegHeader(name string) (segHeader, bool) {
	f, err := l.fs.OpenFile(filepath.Join(l.dir, name), os.O_RDONLY, 0)
	if err != nil {
		return segHeader{}, false
	}
	defer f.Close()
	b := make([]byte, segHeaderSize)
	if n, _ := f.ReadAt(b, 0); n < len(b) {
		return segHeader{}, false
	}
	return decodeSegHeader(b)
}

// createSegment creates the segment file h describes and writes its header
// (synced, with the directory entry, except at Process).
func (l *Log) createSegment(h segHeader) (fsFile, error) {
	path := filepath.Join(l.dir, segName(h.first))
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	_, err = f.WriteAt(encodeSegHeader(h), 0)
	if err == nil && l.opts.Durability != Process {
		err = f.Sync()
		if err == nil {
			err = l.fs.SyncDir(l.dir)
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	return f, nil
}

// Append implements Store. It returns once the record is written at the
// log's Durability. Once the record is queued, Append waits for its commit
// even if ctx ends (the record is in the log either way); ctx bounds only
// the wait for room at the byte bound. An item must fit in one segment
// (LogOptions.SegmentBytes).
func (l *Log) Append(ctx context.Context, data []byte, accepted time.Time, wait bool) (ID, error) {
	need := int64(minItemRecord + len(data))
	if need > l.segBytes-segHeaderSize {
		return "", fmt.Errorf("journal: an item of %d bytes does not fit in a segment of %d bytes", len(data), l.segBytes)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	l.mu.Lock()
	for {
		if l.closing {
			l.mu.Unlock()
			return "", ErrClosed
		}
		if l.err != nil {
			err := l.err
			l.mu.Unlock()
			return "", err
		}
		if l.opts.MaxBytes == 0 || l.used+need <= l.opts.MaxBytes {
			break
		}
		if !wait {
			used := l.used
			l.mu.Unlock()
			return "", fmt.Errorf("%w: %d of %d bytes used", ErrFull, used, l.opts.MaxBytes)
		}
		room := l.room
		l.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		l.mu.Lock()
	}
	seq := l.next
	l.next++
	b := l.cur
	if b.items == 0 {
		b.first = seq
	}
	b.items++
	b.calls++
	ns := accepted.UnixNano()
	if b.oldest == 0 || ns < b.oldest {
		b.oldest = ns
	}
	b.buf = appendItem(b.buf, seq, ns, data)
	l.used += need
	l.stats.Appended++
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-b.done
	if b.err != nil {
		return "", b.err
	}
	return l.formatID(seq), nil
}

// Finish implements Store. IDs of another log, malformed ones, and items
// already finished are ignored.
func (l *Log) Finish(ids ...ID) error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return err
	}
	b := l.cur
	var seqs []uint64
	for _, id := range ids {
		seq, ok := l.parseID(id)
		if !ok {
			continue
		}
		s := findSegment(l.segs, seq)
		if s == nil || !s.finish(seq) {
			continue
		}
		l.stats.Finished++
		if !slices.Contains(b.targets, s.first) {
			b.targets = append(b.targets, s.first)
		}
		seqs = append(seqs, seq)
	}
	if len(seqs) == 0 {
		l.mu.Unlock()
		return nil
	}
	n := len(b.buf)
	for chunk := range slices.Chunk(seqs, finishPerBatch) {
		b.buf = appendFinish(b.buf, chunk)
	}
	l.used += int64(len(b.buf) - n)
	b.finish = true
	b.calls++
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-b.done
	return b.err
}

func (l *Log) formatID(seq uint64) ID {
	var sb strings.Builder
	var num [20]byte
	sb.Grow(len(l.idPrefix) + 16)
	sb.WriteString(l.idPrefix)
	sb.Write(strconv.AppendUint(num[:0], seq>>32, 10))
	sb.WriteByte('-')
	sb.Write(strconv.AppendUint(num[:0], seq&(1<<32-1), 10))
	return ID(sb.String())
}

func (l *Log) parseID(id ID) (uint64, bool) {
	rest, ok := strings.CutPrefix(string(id), l.idPrefix)
	if !ok {
		return 0, false
	}
	r, n, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	run, err1 := strconv.ParseUint(r, 10, 32)
	k, err2 := strconv.ParseUint(n, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return run<<32 | k, true
}

// commitLoop is the committer: it writes each batch queued, one at a time.
func (l *Log) commitLoop() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.opts.Durability == Interval {
		t := time.NewTicker(l.opts.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-l.kick:
		case <-tick:
			l.syncDirty()
			continue
		}
		if l.opts.Durability != Synced {
			// Without an fsync to wait for, a commit would write one
			// record at a time: let the producers that are ready queue
			// theirs first, so that a write carries many.
			runtime.Gosched()
		}
		var linger <-chan time.Time
		for {
			l.mu.Lock()
			b := l.cur
			if len(b.buf) == 0 {
				closing := l.closing
				l.mu.Unlock()
				if closing {
					return
				}
				break
			}
			if b.calls < l.group && !l.closing && l.opts.Durability == Synced {
				// The callers the last commit woke are likely to come
				// back at once: wait for them, a fraction of an fsync at
				// most, so that one fsync serves them all rather than
				// half of them (the other half arrived during the last
				// one).
				l.mu.Unlock()
				if linger == nil {
					linger = time.After(l.linger)
				}
				select {
				case <-l.kick:
					continue
				case <-linger:
				}
				l.mu.Lock()
				b = l.cur
			}
			linger = nil
			l.cur = &logBatch{buf: l.spare[:0], done: make(chan struct{})}
			l.spare = nil
			l.mu.Unlock()
			l.commit(b)
		}
	}
}

// commit writes b at the end of the active segment (a new one first if b
// would overflow it), syncs it at Synced, and wakes b's waiters.
func (l *Log) commit(b *logBatch) {
	start := time.Now()
	l.mu.Lock()
	err := l.err
	act := l.segs[len(l.segs)-1]
	l.mu.Unlock()
	if err == nil && act.size > segHeaderSize && act.size+int64(len(b.buf)) > l.segBytes {
		first := act.first + act.n
		if b.items > 0 {
			first = b.first
		}
		err = l.roll(first)
	}
	if err == nil {
		err = l.write(b.buf)
	}
	if err == nil && l.opts.Durability == Synced {
		err = l.active.Sync()
	}
	l.dirty = true
	d := time.Since(start)

	l.mu.Lock()
	act = l.segs[len(l.segs)-1]
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("journal: the log failed and takes no more items: %w", err)
	}
	if l.err != nil {
		b.err = l.err
	} else {
		act.size += int64(len(b.buf))
		act.add(b.items, b.oldest, false)
		for _, t := range b.targets {
			act.addTarget(t)
		}
	}
	l.stats.Syncs++
	l.stats.SyncTime += d
	// The next commit waits for as many callers as this one and those
	// that queued during it: the group the callers form (see commitLoop).
	l.group = b.calls + l.cur.calls
	l.linger = min(d/4, l.maxLinger)
	l.spare = b.buf[:0]
	b.buf = nil
	l.mu.Unlock()
	if b.finish && err == nil {
		// Before the waiters wake: when Finish returns, the segments it
		// emptied are gone and their room is free.
		l.collect()
	}
	close(b.done)
}

// write writes b at pos in the active segment. At Synced and Interval it
// first zero-fills the segment ahead of b if b would pass the zeros, so that
// the fdatasyncs of the next commits have no file size to commit.
func (l *Log) write(b []byte) error {
	end := l.pos + int64(len(b))
	if l.opts.Durability != Process && end > l.zeroed {
		to := max(end, min(l.segBytes, end+preallocBytes))
		for off := end; off < to; {
			n, err := l.active.WriteAt(zeros[:min(len(zeros), int(to-off))], off)
			if err != nil {
				return err
			}
			off += int64(n)
		}
		l.zeroed = to
	}
	if _, err := l.active.WriteAt(b, l.pos); err != nil {
		return err
	}
	l.pos = end
	l.zeroed = max(l.zeroed, end)
	return nil
}

// trimActive cuts the active segment's preallocated zeros off, when it is
// written no more. A failure leaves zeros that Open reads as the end.
func (l *Log) trimActive() {
	if l.zeroed > l.pos {
		_ = l.active.Truncate(l.pos)
		l.zeroed = l.pos
	}
}

// roll closes the active segment and starts one whose first item is first.
func (l *Log) roll(first uint64) error {
	if l.opts.Durability == Interval && l.dirty {
		if err := l.active.Sync(); err != nil {
			return err
		}
		l.dirty = false
	}
	l.mu.Lock()
	prevFirst := l.segs[len(l.segs)-1].first
	l.mu.Unlock()
	f, err := l.createSegment(segHeader{first: first, prevFirst: prevFirst, prevEnd: first})
	if err != nil {
		return err
	}
	l.trimActive()
	l.active.Close()
	l.active, l.pos, l.zeroed = f, segHeaderSize, segHeaderSize
	l.mu.Lock()
	l.segs = append(l.segs, &segment{first: first, size: segHeaderSize})
	l.used += segHeaderSize
	l.mu.Unlock()
	l.collect()
	return nil
}

// syncDirty is the Interval fdatasync.
func (l *Log) syncDirty() {
	if !l.dirty {
		return
	}
	start := time.Now()
	err := l.active.Sync()
	l.dirty = false
	l.mu.Lock()
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("journal: the log failed and takes no more items: %w", err)
	}
	l.stats.Syncs++
	l.stats.SyncTime += time.Since(start)
	l.mu.Unlock()
}

// collect deletes the segments (but the active one) whose items are all
// finished and whose finish records no longer matter: those that finish
// items of an older segment keep it until that one is deleted, so that no
// finish is forgotten.
func (l *Log) collect() {
	l.mu.Lock()
	var doomed []string
	last := len(l.segs) - 1
	for i, s := range l.segs[:last] {
		if s.live != 0 {
			continue
		}
		gone := true
		for _, t := range s.targets {
			if ts := findSegment(l.segs[:i], t); ts != nil && !ts.deleted {
				gone = false
				break
			}
		}
		if gone {
			s.deleted = true
			l.used -= s.size
			doomed = append(doomed, segName(s.first))
		}
	}
	if len(doomed) > 0 {
		l.segs = slices.DeleteFunc(slices.Clone(l.segs), func(s *segment) bool { return s.deleted })
		close(l.room)
		l.room = make(chan struct{})
	}
	l.mu.Unlock()
	for _, name := range doomed {
		// A segment that cannot be removed stays on disk; its items are
		// finished, so a later Open deletes it.
		_ = l.fs.Remove(filepath.Join(l.dir, name))
	}
	if len(doomed) > 0 && l.opts.Durability != Process {
		_ = l.fs.SyncDir(l.dir)
	}
}

// Recover implements Store: it hands fn the unfinished items of earlier
// runs, oldest first, one segment file at a time, skipping those finished
// meanwhile, and returns nil after the last. Record.Data is valid only
// during fn. After an error from fn, a later Recover resumes with the item
// fn failed on; after a full pass, a later Recover has nothing to hand.
func (l *Log) Recover(ctx context.Context, fn func(Record) error) error {
	l.recoverMu.Lock()
	defer l.recoverMu.Unlock()
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	var segs []*segment
	for _, s := range l.segs {
		if s.first < l.recoverEnd && s.first+s.n > l.recoverNext {
			segs = append(segs, s)
		}
	}
	l.mu.Unlock()
	buf := make([]byte, 0, scanBuffer)
	for _, s := range segs {
		if err := l.recoverSegment(ctx, s, fn, buf); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.recoverNext = l.recoverEnd
	l.mu.Unlock()
	return nil
}

func (l *Log) recoverSegment(ctx context.Context, s *segment, fn func(Record) error, buf []byte) error {
	l.mu.Lock()
	deleted := s.deleted
	l.mu.Unlock()
	if deleted {
		return nil
	}
	path := filepath.Join(l.dir, segName(s.first))
	f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		l.mu.Lock()
		deleted = s.deleted
		l.mu.Unlock()
		if deleted && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	sc := newRecordScanner(f, size, buf)
	for {
		r, _, _, ok := sc.next()
		if !ok {
			if sc.err != nil {
				return fmt.Errorf("journal: reading %s: %w", path, sc.err)
			}
			return nil
		}
		if r.kind != recItem {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		l.mu.Lock()
		if l.closing {
			l.mu.Unlock()
			return ErrClosed
		}
		skip := r.seq < l.recoverNext || s.isFinished(r.seq)
		if !skip {
			l.stats.Recovered++
		}
		l.mu.Unlock()
		if skip {
			continue
		}
		if err := fn(Record{ID: l.formatID(r.seq), Data: r.data, Accepted: time.Unix(0, r.accepted)}); err != nil {
			return err
		}
		l.mu.Lock()
		l.recoverNext = max(l.recoverNext, r.seq+1)
		l.mu.Unlock()
	}
}

// Stats implements Store. Oldest is the earliest acceptance time among the
// items of the oldest segment that still holds an unfinished one: exact
// when items are finished in the order they were appended, otherwise up to
// one segment's worth older than the oldest unfinished item. Bytes counts
// the bytes written (headers and records, those queued included), not the
// zeros that preallocate the active segment: the files occupy up to
// min(SegmentBytes, 4 MiB) more.
func (l *Log) Stats() StoreStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.Bytes = l.used
	for _, s := range l.segs {
		if s.live > 0 && st.Items == 0 {
			st.Oldest = oldestTime(s.oldest)
		}
		st.Items += s.live
	}
	return st
}

// Close writes what is queued, fdatasyncs it at Interval, and closes the
// files. Items not finished stay for the next Open. Close is idempotent;
// the other methods return ErrClosed after it.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closing = true
	close(l.room)
	l.room = make(chan struct{})
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-l.done
	var err error
	if l.opts.Durability == Interval && l.dirty {
		err = l.active.Sync()
	}
	l.trimActive()
	if cerr := l.active.Close(); err == nil {
		err = cerr
	}
	l.lock.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		err = l.err
	} else {
		err = fmt.Errorf("journal: %w", err)
	}
	return err
}

var _ Store = (*Log)(nil)
