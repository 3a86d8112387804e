package benchmarks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/journal"
)

// The journal's benchmarks (issue 15): this machine's fsync latency, the
// embedded Log's Append at each durability level, and its replay of a
// backlog. cmd/journal runs them and prints the results.

// Latencies are the percentiles of a set of durations.
type Latencies struct {
	N                   int
	Mean, P50, P99, Max time.Duration
}

func latencies(ds []time.Duration) Latencies {
	if len(ds) == 0 {
		return Latencies{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Latencies{N: len(ds), Mean: sum / time.Duration(len(ds)), P50: at(0.50), P99: at(0.99), Max: ds[len(ds)-1]}
}

// FsyncLatency appends 4 KiB to a file in dir and fdatasyncs it, samples
// times, and returns the latency of each write+fdatasync.
func FsyncLatency(dir string, samples int) (Latencies, error) {
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		return Latencies{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	ds := make([]time.Duration, 0, samples)
	for range samples {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			return Latencies{}, err
		}
		if err := fdatasync(f); err != nil {
			return Latencies{}, err
		}
		ds = append(ds, time.Since(start))
	}
	return latencies(ds), nil
}

// FsyncInPlaceLatency is FsyncLatency over a file zero-filled (and synced)
// beforehand: each 4 KiB write lands on blocks already allocated, within the
// file's size, as the Log's writes to a preallocated segment do, so that the
// fdatasync has no metadata to commit. It is the floor of a group commit.
func FsyncInPlaceLatency(dir string, samples int) (Latencies, error) {
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		return Latencies{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, samples*4096)); err != nil {
		return Latencies{}, err
	}
	if err := fdatasync(f); err != nil {
		return Latencies{}, err
	}
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	ds := make([]time.Duration, 0, samples)
	for i := range samples {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i)*4096); err != nil {
			return Latencies{}, err
		}
		if err := fdatasync(f); err != nil {
			return Latencies{}, err
		}
		ds = append(ds, time.Since(start))
	}
	return latencies(ds), nil
}

// AppendResult is one run of Appends to a fresh Log.
type AppendResult struct {
	Level      journal.Durability
	Producers  int
	Items      int
	Wall       time.Duration
	CPU        time.Duration // process CPU time (getrusage) over the run
	Append     Latencies     // of each Append call
	Commits    uint64        // group commits
	CommitTime time.Duration // total time of the group commits (write + fdatasync)
}

// ItemsPerSec is the run's throughput.
func (r AppendResult) ItemsPerSec() float64 { return float64(r.Items) / r.Wall.Seconds() }

// CPUPerItem is the process CPU time per item.
func (r AppendResult) CPUPerItem() time.Duration { return r.CPU / time.Duration(r.Items) }

// JournalAppend opens a Log in a fresh directory under dir at level, has
// producers goroutines append items items of size bytes in all (with
// wait=true), and measures it. The directory is removed after.
func JournalAppend(dir string, level journal.Durability, producers, items, size int) (AppendResult, error) {
	d, err := os.MkdirTemp(dir, "append-*")
	if err != nil {
		return AppendResult{}, err
	}
	defer os.RemoveAll(d)
	l, err := journal.Open(d, journal.LogOptions{Durability: level})
	if err != nil {
		return AppendResult{}, err
	}
	defer l.Close()
	data := make([]byte, size)
	lat := make([][]time.Duration, producers)
	var left atomic.Int64
	left.Store(int64(items))
	var firstErr atomic.Value
	var wg sync.WaitGroup
	runtime.GC()
	cpu0 := processCPU()
	start := time.Now()
	for p := range producers {
		lat[p] = make([]time.Duration, 0, items/producers+1)
		wg.Go(func() {
			ctx := context.Background()
			for left.Add(-1) >= 0 {
				t0 := time.Now()
				_, err := l.Append(ctx, data, t0, true)
				lat[p] = append(lat[p], time.Since(t0))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	cpu := processCPU() - cpu0
	if err, ok := firstErr.Load().(error); ok {
		return AppendResult{}, err
	}
	var all []time.Duration
	for _, ds := range lat {
		all = append(all, ds...)
	}
	st := l.Stats()
	return AppendResult{Level: level, Producers: producers, Items: items, Wall: wall, CPU: cpu, Append: latencies(all), Commits: st.Syncs, CommitTime: st.SyncTime}, nil
}

// BuildBacklog fills a Log in dir with items of size bytes until its files
// hold about bytes, at Process level (as fast as it goes), and closes it.
func BuildBacklog(dir string, bytes int64, size int) (items int, err error) {
	l, err := journal.Open(dir, journal.LogOptions{Durability: journal.Process})
	if err != nil {
		return 0, err
	}
	data := make([]byte, size)
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for l.Stats().Bytes < bytes {
				for range 1000 {
					if _, err := l.Append(context.Background(), data, time.Now(), true); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		return 0, err
	}
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return int(n.Load()), nil
}

// ReplayResult is the replay of a backlog: Open (which reads and checks
// every record) and Recover (which reads them again and hands each to fn).
type ReplayResult struct {
	DiskBytes    int64 // of the segment files
	Items        int
	Open         time.Duration
	Recover      time.Duration
	PeakHeap     uint64 // the largest heap in use sampled during the replay
	PeakRSS      int64  // VmHWM of the process (bytes; 0 where /proc is missing)
	HeapAfterGC  uint64 // heap in use after Recover and a GC, the Log still open
	SegmentFiles int
}

// MBPerSec is the rate of Open and Recover together over the backlog.
func (r ReplayResult) MBPerSec() float64 {
	return float64(r.DiskBytes) / 1e6 / (r.Open + r.Recover).Seconds()
}

// RecoverMBPerSec is the rate of Recover alone.
func (r ReplayResult) RecoverMBPerSec() float64 {
	return float64(r.DiskBytes) / 1e6 / r.Recover.Seconds()
}

// JournalReplay opens the Log in dir and recovers every item, sampling the
// heap.
func JournalReplay(dir string) (ReplayResult, error) {
	var res ReplayResult
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	res.SegmentFiles = len(segs)
	for _, s := range segs {
		if fi, err := os.Stat(s); err == nil {
			res.DiskBytes += fi.Size()
		}
	}
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	l, err := journal.Open(dir, journal.LogOptions{})
	res.Open = time.Since(start)
	if err != nil {
		close(stop)
		return res, err
	}
	defer l.Close()
	start = time.Now()
	var sum int
	err = l.Recover(context.Background(), func(r journal.Record) error {
		res.Items++
		sum += len(r.Data)
		return nil
	})
	res.Recover = time.Since(start)
	close(stop)
	<-sampled
	res.PeakHeap = peak.Load()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapAfterGC = ms.HeapInuse
	res.PeakRSS = peakRSS()
	return res, err
}

// peakRSS returns the process's VmHWM from /proc/self/status, in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// FormatLatencies prints a Latencies as "p50 / p99 / max".
func FormatLatencies(l Latencies) string {
	return fmt.Sprintf("%s / %s / %s", roundDur(l.P50), roundDur(l.P99), roundDur(l.Max))
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d > time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	}
	return d
}
