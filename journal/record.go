package journal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// The record format. Every record is a 9-byte header and a payload:
//
//	offset 0  CRC32C (Castagnoli), little endian, over bytes 4 to the end
//	       4  payload length n, uint32 little endian
//	       8  kind: recItem or recFinish
//	       9  payload, n bytes
//
// An item's payload is its sequence number (uint64), its acceptance time
// (Unix nanoseconds, int64) and its data. A finish record's payload is one
// or more sequence numbers (uint64 each) of items finished.
//
// A segment file starts with a segHeaderSize-byte header: segMagic, then
// the segment's first sequence number, the first sequence number of the
// segment before it and where that one's items end (uint64 each; 0 when
// unknown), and the CRC32C of those 32 bytes. The last two let Open count
// the items lost at the damaged end of a segment, as long as the segment
// after it was written right after it (no segment deleted between them).
const (
	recHeaderSize  = 9
	recItem        = 1
	recFinish      = 2
	itemFixed      = 16 // sequence and acceptance time
	minItemRecord  = recHeaderSize + itemFixed
	maxPayload     = 1 << 30
	segHeaderSize  = 36
	segMagic       = "MJSEG001"
	finishPerBatch = 1 << 13 // sequence numbers per finish record at most (64 KiB)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rawRecord is a decoded record. For an item, data aliases the buffer it was
// decoded from.
type rawRecord struct {
	kind     byte
	seq      uint64 // recItem
	accepted int64  // recItem, Unix nanoseconds
	data     []byte // recItem: the item; recFinish: the sequence numbers, 8 bytes each
}

// appendItem appends an item record to dst.
func appendItem(dst []byte, seq uint64, accepted int64, data []byte) []byte {
	start := len(dst)
	n := itemFixed + len(data)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, recItem)
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(accepted))
	dst = append(dst, data...)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// appendFinish appends a finish record of seqs (at least one) to dst.
func appendFinish(dst []byte, seqs []uint64) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(8*len(seqs)))
	dst = append(dst, recFinish)
	for _, s := range seqs {
		dst = binary.LittleEndian.AppendUint64(dst, s)
	}
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

var errBadRecord = errors.New("journal: bad record")

// recordLen returns the length of the record whose header is hdr (at least
// recHeaderSize bytes), or an error when the header cannot start a record
// of at most avail bytes.
func recordLen(hdr []byte, avail int64) (int, error) {
	n := int64(binary.LittleEndian.Uint32(hdr[4:]))
	switch hdr[8] {
	case recItem:
		if n < itemFixed {
			return 0, errBadRecord
		}
	case recFinish:
		if n < 8 || n%8 != 0 {
			return 0, errBadRecord
		}
	default:
		return 0, errBadRecord
	}
	if n > maxPayload || recHeaderSize+n > avail {
		return 0, errBadRecord
	}
	return recHeaderSize + int(n), nil
}

// decodeRecord decodes the record at the start of b, returning it and its
// length. It never panics, whatever b holds.
func decodeRecord(b []byte) (rawRecord, int, error) {
	if len(b) < recHeaderSize {
		return rawRecord{}, 0, errBadRecord
	}
	n, err := recordLen(b, int64(len(b)))
	if err != nil {
		return rawRecord{}, 0, err
	}
	if binary.LittleEndian.Uint32(b) != crc32.Checksum(b[4:n], castagnoli) {
		return rawRecord{}, 0, errBadRecord
	}
	r := rawRecord{kind: b[8]}
	p := b[recHeaderSize:n]
	if r.kind == recItem {
		r.seq = binary.LittleEndian.Uint64(p)
		r.accepted = int64(binary.LittleEndian.Uint64(p[8:]))
		r.data = p[itemFixed:]
	} else {
		r.data = p
	}
	return r, n, nil
}

// finishSeq returns the i-th sequence number of a finish record.
func (r *rawRecord) finishSeq(i int) uint64 { return binary.LittleEndian.Uint64(r.data[8*i:]) }

// segHeader is what a segment's header holds.
type segHeader struct {
	first     uint64 // the segment's first sequence number (also its name)
	prevFirst uint64 // the first sequence number of the segment before it; 0: unknown
	prevEnd   uint64 // where that segment's items end
}

func encodeSegHeader(h segHeader) []byte {
	b := make([]byte, 0, segHeaderSize)
	b = append(b, segMagic...)
	b = binary.LittleEndian.AppendUint64(b, h.first)
	b = binary.LittleEndian.AppendUint64(b, h.prevFirst)
	b = binary.LittleEndian.AppendUint64(b, h.prevEnd)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeSegHeader returns the header at the start of b, or false if there
// is none.
func decodeSegHeader(b []byte) (segHeader, bool) {
	if len(b) < segHeaderSize || string(b[:8]) != segMagic ||
		binary.LittleEndian.Uint32(b[32:]) != crc32.Checksum(b[:32], castagnoli) {
		return segHeader{}, false
	}
	return segHeader{
		first:     binary.LittleEndian.Uint64(b[8:]),
		prevFirst: binary.LittleEndian.Uint64(b[16:]),
		prevEnd:   binary.LittleEndian.Uint64(b[24:]),
	}, true
}

// scanBuffer is the read window of a scan: records are read from the file
// through it, a buffer's worth at a time, so that memory does not grow with
// the segment.
const scanBuffer = 1 << 20

// recordScanner reads the records of one segment, from just after its
// header, through a window of the file. The records end where the file's
// trailing zeros start (a preallocated tail not yet written: no record
// starts with nine zero bytes, its kind being 1 or 2). A bad record (a checksum that does
// not match, an impossible length or kind) starts a bad region, which ends
// at the next offset where a valid record starts: the scanner looks for it
// byte by byte, so that a record whose length field was damaged costs only
// that record.
type recordScanner struct {
	r    io.ReaderAt
	size int64
	end  int64 // where the file's trailing zeros start: no record starts at or after it
	buf  []byte
	boff int64 // file offset of buf[0]
	off  int64 // offset of the next record
	err  error // a read error (not corruption)
}

func newRecordScanner(r io.ReaderAt, size int64, buf []byte) *recordScanner {
	if buf == nil {
		buf = make([]byte, 0, scanBuffer)
	}
	s := &recordScanner{r: r, size: size, buf: buf[:0], off: segHeaderSize}
	s.end = s.dataEnd()
	return s
}

// dataEnd returns the offset just past the file's last non-zero byte (after
// the header), reading back from its end a window at a time.
func (s *recordScanner) dataEnd() int64 {
	end := s.size
	for end > segHeaderSize {
		n := min(int64(max(cap(s.buf), recHeaderSize)), end-segHeaderSize)
		b, ok := s.window(end-n, int(n))
		if !ok {
			return end
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != 0 {
				return end - n + int64(i) + 1
			}
		}
		end -= n
	}
	return end
}

// window returns the n bytes at off (n <= s.size-off), reading as needed.
func (s *recordScanner) window(off int64, n int) ([]byte, bool) {
	if off >= s.boff && off+int64(n) <= s.boff+int64(len(s.buf)) {
		return s.buf[off-s.boff : off-s.boff+int64(n)], true
	}
	want := max(n, cap(s.buf))
	if int64(want) > s.size-off {
		want = int(s.size - off)
	}
	if cap(s.buf) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	m, err := s.r.ReadAt(s.buf, off)
	if m < want {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		s.err = err
		s.buf = s.buf[:0]
		return nil, false
	}
	s.boff = off
	return s.buf[:n], true
}

// at decodes the record at off, if a valid one starts there.
func (s *recordScanner) at(off int64) (rawRecord, int, bool) {
	avail := s.size - off
	if avail < recHeaderSize {
		return rawRecord{}, 0, false
	}
	hdr, ok := s.window(off, recHeaderSize)
	if !ok {
		return rawRecord{}, 0, false
	}
	n, err := recordLen(hdr, avail)
	if err != nil {
		return rawRecord{}, 0, false
	}
	b, ok := s.window(off, n)
	if !ok {
		return rawRecord{}, 0, false
	}
	r, _, err := decodeRecord(b)
	return r, n, err == nil
}

// next returns the next valid record and its offset. badFrom >= 0 when a
// bad region was skipped to reach it (it spans badFrom to off). At the end,
// ok is false; then s.off is where the valid records ended, and badFrom >= 0
// if a bad region ran to the end of the data (a torn tail in the last
// segment). A read error also ends the scan, in s.err.
func (s *recordScanner) next() (r rawRecord, off, badFrom int64, ok bool) {
	badFrom = -1
	for pos := s.off; pos < s.end && s.err == nil; pos++ {
		r, n, valid := s.at(pos)
		if valid {
			s.off = pos + int64(n)
			return r, pos, badFrom, true
		}
		if badFrom < 0 {
			badFrom = pos
		}
	}
	return rawRecord{}, s.off, badFrom, false
}
