package journal

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// memFS is a file layer in memory that models a machine crash: crash
// returns what would be found on the disk after power loss, keeping of each
// file only what was synced (and of the directory only the entries synced
// with SyncDir), optionally with the last write torn in the middle.
type memFS struct {
	mu      sync.Mutex
	files   map[string]*memNode // the directory as the running process sees it
	durable map[string]*memNode // the entries as of the last SyncDir
	syncErr error               // returned by every Sync when set
	syncs   int
	locked  map[string]bool
}

type memNode struct {
	data    []byte // what reads see
	disk    []byte // what survives a crash: data as of the last Sync (truncations at once)
	lo, hi  int    // data[lo:hi] was written since the last Sync (hi 0: nothing)
	lastOff int    // the last write, if not synced since (lastLen 0: none)
	lastLen int
}

// write writes p at off, extending the file with zeros as needed.
func (n *memNode) write(p []byte, off int) {
	if end := off + len(p); end > len(n.data) {
		n.data = append(n.data, make([]byte, end-len(n.data))...)
	}
	copy(n.data[off:], p)
	if n.hi == 0 {
		n.lo = off
	}
	n.lo, n.hi = min(n.lo, off), max(n.hi, off+len(p))
	n.lastOff, n.lastLen = off, len(p)
}

// sync makes data durable.
func (n *memNode) sync() {
	if len(n.disk) < len(n.data) {
		n.disk = append(n.disk, n.data[len(n.disk):]...)
	}
	n.disk = n.disk[:len(n.data)]
	if n.hi > 0 {
		copy(n.disk[n.lo:n.hi], n.data[n.lo:n.hi])
	}
	n.lo, n.hi, n.lastLen = 0, 0, 0
}

func newMemFS() *memFS {
	return &memFS{files: map[string]*memNode{}, durable: map[string]*memNode{}}
}

// crash returns the file system found after a power loss now. With tear,
// each file keeps also the first half of its last write, when that write
// was not synced.
func (m *memFS) crash(tear bool) *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := newMemFS()
	for name, n := range m.durable {
		c := &memNode{data: bytes.Clone(n.disk)}
		if tear && n.lastLen > 0 {
			half := n.lastLen / 2
			c.write(n.data[n.lastOff:n.lastOff+half], n.lastOff)
		}
		c.sync()
		out.files[name] = c
		out.durable[name] = c
	}
	return out
}

// clone returns the file system as it is (a process crash: the page cache
// survives).
func (m *memFS) clone() *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := newMemFS()
	for name, n := range m.files {
		c := &memNode{data: bytes.Clone(n.data)}
		c.sync()
		out.files[name] = c
		out.durable[name] = c
	}
	return out
}

// names returns the files of the directory, sorted.
func (m *memFS) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n := range m.files {
		out = append(out, filepath.Base(n))
	}
	sort.Strings(out)
	return out
}

// allSynced reports whether every file's data is synced.
func (m *memFS) allSynced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.files {
		if n.hi > 0 || len(n.disk) != len(n.data) {
			return false
		}
	}
	return true
}

// edit lets a test change a file's bytes (corruption), as the disk would.
func (m *memFS) edit(name string, f func([]byte) []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.files[name]
	n.data = f(n.data)
	n.disk, n.hi, n.lastLen = nil, 0, 0
	n.sync()
}

func (m *memFS) OpenFile(name string, flag int, perm os.FileMode) (fsFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.files[name]
	if !ok {
		if flag&os.O_CREATE == 0 {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		n = &memNode{}
		m.files[name] = n
	}
	if flag&os.O_TRUNC != 0 {
		*n = memNode{}
	}
	return &memFile{fs: m, n: n, name: name}, nil
}

func (m *memFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n := range m.files {
		if filepath.Dir(n) == filepath.Clean(dir) {
			out = append(out, filepath.Base(n))
		}
	}
	return out, nil
}

func (m *memFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.files[oldname]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	delete(m.files, oldname)
	m.files[newname] = n
	return nil
}

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.files, name)
	return nil
}

func (m *memFS) MkdirAll(string) error { return nil }

func (m *memFS) Lock(dir string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locked == nil {
		m.locked = map[string]bool{}
	}
	if m.locked[dir] {
		return nil, errors.New("locked")
	}
	m.locked[dir] = true
	return memLock{m, dir}, nil
}

type memLock struct {
	m   *memFS
	dir string
}

func (l memLock) Close() error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	delete(l.m.locked, l.dir)
	return nil
}

func (m *memFS) SyncDir(string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.durable = map[string]*memNode{}
	for k, v := range m.files {
		m.durable[k] = v
	}
	return nil
}

type memFile struct {
	fs   *memFS
	n    *memNode
	name string
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	k := copy(p, f.n.data[off:])
	if k < len(p) {
		return k, io.EOF
	}
	return k, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.n.write(p, len(f.n.data))
	return len(p), nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.n.write(p, int(off))
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.syncErr != nil {
		return f.fs.syncErr
	}
	f.fs.syncs++
	f.n.sync()
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n := f.n
	if size < int64(len(n.data)) {
		n.data = n.data[:size]
	}
	n.disk = n.disk[:min(len(n.disk), len(n.data))]
	n.lo, n.hi = min(n.lo, len(n.data)), min(n.hi, len(n.data))
	if n.lo >= n.hi {
		n.lo, n.hi = 0, 0
	}
	n.lastLen = max(0, min(n.lastLen, len(n.data)-n.lastOff))
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return int64(len(f.n.data)), nil
}

func (f *memFile) Close() error { return nil }
