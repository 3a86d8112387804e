package muster_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

// The README's HTTP recipe under load: 16 clients post orders while the
// batcher is backed up (producers blocked in Add), then SIGTERM runs the
// server's and the batcher's Shutdown at once with one deadline. Every
// order answered 202 is written, no order is written that was not, and the
// batcher (its blocked handlers answering 503 at once) drains well before
// the deadline, with nothing abandoned.
func TestShutdownRecipeHTTP(t *testing.T) {
	var mu sync.Mutex
	written := map[int]int{}
	b := &muster.Batcher[int]{
		MaxBatchSize:         10,
		BatchTimeout:         5 * time.Millisecond,
		MaxConcurrentBatches: 2,
		PendingWorkCapacity:  100, // 100 items at 400/s: 250 ms of drain
		Fire: func(ctx context.Context, orders []int) error {
			time.Sleep(50 * time.Millisecond) // the downstream's latency, in real time (an HTTP server runs here)
			mu.Lock()
			for _, id := range orders {
				written[id]++
			}
			mu.Unlock()
			return nil
		},
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		switch err := b.Add(r.Context(), id); {
		case err == nil:
			w.WriteHeader(http.StatusAccepted)
		case errors.Is(err, muster.ErrStopped):
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		default:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	var amu sync.Mutex
	accepted, refused := map[int]bool{}, 0
	var clients sync.WaitGroup
	const producers = 16
	for p := range producers {
		clients.Go(func() {
			for i := 0; ; i++ {
				id := p*1_000_000 + i
				resp, err := client.Post("http://"+ln.Addr().String()+"/orders/"+strconv.Itoa(id), "", nil)
				if err != nil {
					return // the server has shut down: not accepted
				}
				resp.Body.Close()
				amu.Lock()
				switch resp.StatusCode {
				case http.StatusAccepted:
					accepted[id] = true
				case http.StatusServiceUnavailable:
					refused++
				default:
					t.Errorf("order %d: %s", id, resp.Status)
				}
				amu.Unlock()
				if resp.StatusCode != http.StatusAccepted {
					return // a client sent away stops, as it would retry elsewhere
				}
			}
		})
	}
	// Load until the batcher is backed up: its queue full, producers held.
	for give := time.Now().Add(30 * time.Second); b.Stats().Queued < 90; {
		if time.Now().After(give) {
			t.Fatalf("16 clients did not fill the queue in 30 s: %+v", b.Stats())
		}
		time.Sleep(time.Millisecond) // polling the condition
	}

	const deadline = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var srvErr, batchErr error
	var took time.Duration
	wg.Go(func() { srvErr = srv.Shutdown(ctx) })
	wg.Go(func() { batchErr = b.Shutdown(ctx); took = time.Since(start) })
	wg.Wait()
	clients.Wait()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if srvErr != nil || batchErr != nil {
		t.Fatalf("server Shutdown %v, batcher Shutdown %v", srvErr, batchErr)
	}
	// (The server's Shutdown may take up to 5 s more: net/http waits that
	// long for a connection accepted whose request has not arrived.)
	if took > deadline/2 {
		t.Errorf("the batcher's shutdown took %v of a %v deadline", took, deadline)
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range accepted {
		if written[id] != 1 {
			t.Fatalf("order %d accepted (202) but written %d times", id, written[id])
		}
	}
	for id := range written {
		if !accepted[id] {
			t.Fatalf("order %d written but its client was not told 202", id)
		}
	}
	if s := b.Stats(); s.Added != uint64(len(accepted)) || s.Abandoned != 0 || s.Pending != 0 {
		t.Errorf("stats %+v, %d accepted", s, len(accepted))
	}
	t.Logf("%d orders accepted and written, %d answered 503, batcher shut down in %v", len(accepted), refused, took.Round(time.Millisecond))
}

// The README's sizing rule: a full queue is PendingWorkCapacity items (plus
// the batches in flight and waiting) of work at the downstream's rate, and
// the shutdown deadline must cover it. 1,000 queued items at 200 items/s
// are 5 s of work: a deadline shorter than the drain abandons what is left
// (and says how much), a longer one drains everything.
func TestShutdownDeadlineCoversDrain(t *testing.T) {
	for _, tc := range []struct {
		deadline time.Duration
		complete bool
	}{
		{4250 * time.Millisecond, false}, // between two batches' ends: 8 of 12 done
		{7 * time.Second, true},
	} {
		t.Run(tc.deadline.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := &muster.Batcher[int]{
					MaxBatchSize:         100,
					MaxConcurrentBatches: 1,
					PendingWorkCapacity:  1000,
					Overflow:             muster.OverflowFail,
					Fire: func(ctx context.Context, items []int) error {
						// 200 items/s: a batch of 100 takes 500 ms.
						select {
						case <-time.After(time.Duration(len(items)) * time.Second / 200):
							return nil
						case <-ctx.Done():
							return context.Cause(ctx)
						}
					},
				}
				if err := b.Start(); err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				for i := 0; ; i++ {
					if err := b.Add(ctx, i); errors.Is(err, muster.ErrFull) {
						break
					} else if err != nil {
						t.Fatal(err)
					}
				}
				s := b.Stats()
				if s.Queued != 1000 {
					t.Fatalf("queued %d, want the capacity", s.Queued)
				}
				drain := time.Duration(s.Pending) * time.Second / 200
				t.Logf("%d items pending (%d queued): %v of work at 200/s", s.Pending, s.Queued, drain)
				sctx, cancel := context.WithTimeout(ctx, tc.deadline)
				defer cancel()
				start := time.Now()
				err := b.Shutdown(sctx)
				var se *muster.ShutdownError
				switch {
				case tc.complete && err != nil:
					t.Fatalf("deadline %v for %v of work: %v", tc.deadline, drain, err)
				case tc.complete && time.Since(start) != drain:
					t.Errorf("drained in %v, want %v", time.Since(start), drain)
				case !tc.complete && !errors.As(err, &se):
					t.Fatalf("deadline %v for %v of work: %v, want a *ShutdownError", tc.deadline, drain, err)
				case !tc.complete && se.Items != s.Pending-int(tc.deadline/(500*time.Millisecond))*100:
					t.Errorf("left %d items, want %d: %v", se.Items, s.Pending-int(tc.deadline/(500*time.Millisecond))*100, err)
				}
				_ = b.Stop()
			})
		})
	}
}
