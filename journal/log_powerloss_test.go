package journal

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestPowerLossSynced cuts the power (memFS.crash: only what was synced
// survives, and the last unsynced write may be torn in the middle) at
// random moments while producers append and finish at Synced, then
// reopens: every item whose Append returned is recovered, unless its Finish
// returned, in which case it is not.
func TestPowerLossSynced(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 4))
	for round := range 16 {
		tear := round%2 == 1
		t.Run(fmt.Sprintf("round%d-tear=%v", round, tear), func(t *testing.T) {
			mfs := newMemFS()
			opts := LogOptions{fs: mfs, SegmentBytes: 8 << 10}
			l := mustOpen(t, "/j", opts)
			var mu sync.Mutex
			appended := map[ID]string{}
			finished := map[ID]bool{}
			finishing := map[ID]bool{} // Finish called, maybe not returned
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for p := range 8 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						data := fmt.Sprintf("p%d-%d", p, i)
						id, err := l.Append(context.Background(), []byte(data), time.Now(), false)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						appended[id] = data
						mu.Unlock()
						if i%3 == 0 {
							mu.Lock()
							finishing[id] = true
							mu.Unlock()
							if err := l.Finish(id); err != nil {
								t.Error(err)
								return
							}
							mu.Lock()
							finished[id] = true
							mu.Unlock()
						}
					}
				})
			}
			at := 50 + rng.IntN(400)
			waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(appended) >= at })
			mu.Lock()
			acked := make(map[ID]string, len(appended))
			for id, d := range appended {
				acked[id] = d
			}
			fin := make(map[ID]bool, len(finished))
			for id := range finished {
				fin[id] = true
			}
			inFlight := make(map[ID]bool) // a Finish not returned may or may not be durable
			for id := range finishing {
				inFlight[id] = !fin[id]
			}
			after := mfs.crash(tear)
			mu.Unlock()
			close(stop)
			wg.Wait()
			l.Close()

			l2 := mustOpen(t, "/j", LogOptions{fs: after, SegmentBytes: 8 << 10})
			defer l2.Close()
			got := map[ID]string{}
			for _, r := range recoverAll(t, l2) {
				got[r.id] = r.data
			}
			for id, d := range acked {
				switch {
				case inFlight[id] && got[id] != "" && got[id] != d:
					t.Errorf("%s recovered as %q, want %q", id, got[id], d)
				case fin[id] && got[id] != "":
					t.Errorf("%s was finished (Finish returned) but is recovered", id)
				case !fin[id] && !inFlight[id] && got[id] != d:
					t.Errorf("%s (%q) acknowledged at Synced, recovered as %q", id, d, got[id])
				}
			}
			if st := l2.Stats(); st.Corrupt != 0 {
				t.Errorf("a power loss counted %d corrupt records: a torn tail is not corruption", st.Corrupt)
			}
			if len(acked) < at {
				t.Fatalf("only %d appends before the crash", len(acked))
			}
		})
	}
}

// TestPowerLossInterval: a machine crash loses the items appended since the
// last interval fdatasync, and none before it: the power is cut, without a
// Close, an interval after the first 20 Appends and right after 20 more.
// It runs in a synctest bubble: the interval passes without a wait.
func TestPowerLossInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mfs := newMemFS()
		l := mustOpen(t, "/j", LogOptions{fs: mfs, Durability: Interval, SyncInterval: time.Hour})
		defer l.Close()
		for i := range 20 {
			mustAppend(t, l, fmt.Sprint("synced-", i))
		}
		time.Sleep(time.Hour) // an interval passes...
		synctest.Wait()       // ...and its fdatasync is done
		if !mfs.allSynced() {
			t.Fatal("no fdatasync after an interval")
		}
		for i := range 20 { // Appends return at once; the next fdatasync is an hour away
			mustAppend(t, l, fmt.Sprint("window-", i))
		}
		after := mfs.crash(false)
		l2 := mustOpen(t, "/j", LogOptions{fs: after})
		defer l2.Close()
		got := datas(recoverAll(t, l2))
		want := make([]string, 20)
		for i := range want {
			want[i] = fmt.Sprint("synced-", i)
		}
		if !slices.Equal(got, want) {
			t.Errorf("after a crash: recovered %v, want the 20 synced items and none of the window", got)
		}
		// Close fdatasyncs at Interval.
		l.Close()
		l3 := mustOpen(t, "/j", LogOptions{fs: mfs.crash(false)})
		defer l3.Close()
		if got := recoverAll(t, l3); len(got) != 40 {
			t.Errorf("after Close and a crash: recovered %d items, want 40", len(got))
		}
	})
}

// TestPowerLossProcess: at Process the log never fsyncs, so a machine crash
// loses what the OS had not written back (here, all of this run's items),
// while a process crash loses nothing.
func TestPowerLossProcess(t *testing.T) {
	mfs := newMemFS()
	l := mustOpen(t, "/j", LogOptions{fs: mfs, Durability: Process})
	for i := range 20 {
		mustAppend(t, l, fmt.Sprint(i))
	}
	// A process crash: the log is abandoned, the page cache kept.
	proc := mfs.clone()
	machine := mfs.crash(true)
	l.Close()
	if mfs.syncs != 1 { // the identity file at Open, nothing after
		t.Errorf("%d fsyncs at Process, want only Open's identity file", mfs.syncs)
	}
	lp := mustOpen(t, "/j", LogOptions{fs: proc})
	defer lp.Close()
	if got := recoverAll(t, lp); len(got) != 20 {
		t.Errorf("after a process crash: recovered %d, want 20", len(got))
	}
	lm := mustOpen(t, "/j", LogOptions{fs: machine})
	defer lm.Close()
	if got := recoverAll(t, lm); len(got) != 0 {
		t.Errorf("after a machine crash at Process: recovered %d items of 20 never synced", len(got))
	}
}
