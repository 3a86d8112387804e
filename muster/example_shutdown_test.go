package muster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/musterhq/muster/muster"
)

// An HTTP service that accepts orders into a batcher shuts down on SIGTERM
// with one deadline for both, the server's Shutdown and the batcher's
// running at the same time. The batcher's Shutdown makes a handler blocked
// in Add (backpressure) return ErrStopped at once, so it answers 503 and the
// client retries elsewhere, and the server's Shutdown, which waits for the
// handlers, is not held up; meanwhile the batcher drains what it accepted.
// The other order (server first, then batcher) lets handlers blocked in Add
// spend the whole deadline, and the batcher then gets an expired context and
// abandons what it had accepted.
//
// The deadline must cover the drain, at the downstream's rate:
// PendingWorkCapacity items, plus the full batch waiting for a slot and the
// batches in flight. 1,000 items at 200 items/s is 5 s of work; give
// Shutdown more than that (and the orchestrator's grace
// period, Kubernetes' terminationGracePeriodSeconds, more still), or lower
// PendingWorkCapacity.
func Example_httpService() {
	db := make(chan struct{}) // the database is slow: writes wait until it answers
	var mu sync.Mutex
	var written []int
	b := &muster.Batcher[int]{
		MaxBatchSize:         2,
		MaxConcurrentBatches: 1,
		PendingWorkCapacity:  2, // with the batch in flight: orders 1-6 accepted, order 7 waits in Add
		Fire: func(ctx context.Context, orders []int) error {
			<-db
			mu.Lock()
			written = append(written, orders...)
			mu.Unlock()
			return nil
		},
	}
	if err := b.Start(); err != nil {
		fmt.Println(err)
		return
	}
	sigterm := make(chan struct{}) // stands in for signal.NotifyContext(ctx, syscall.SIGTERM)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		if id == 7 {
			close(sigterm) // SIGTERM arrives while order 7 is being taken
		}
		switch err := b.Add(r.Context(), id); {
		case err == nil:
			w.WriteHeader(http.StatusAccepted) // accepted: the batcher will write it
		case errors.Is(err, muster.ErrStopped):
			http.Error(w, "shutting down", http.StatusServiceUnavailable) // not taken: the client retries elsewhere
		default:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	post := func(id int) {
		resp, err := client.Post("http://"+ln.Addr().String()+"/orders/"+strconv.Itoa(id), "", nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Printf("order %d: %s\n", id, resp.Status)
	}
	for id := 1; id <= 6; id++ {
		post(id)
	}
	answered := make(chan struct{})
	go func() { post(7); close(answered) }()

	// On SIGTERM: one deadline, both shutdowns at once.
	<-sigterm
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var srvErr, batchErr error
	wg.Go(func() { srvErr = srv.Shutdown(ctx) })
	wg.Go(func() { batchErr = b.Shutdown(ctx) })
	<-answered // order 7 is answered (503) while the database is still slow
	close(db)  // the database answers: the accepted orders are written
	wg.Wait()
	fmt.Println("server:", srvErr, "batcher:", batchErr)
	slices.Sort(written)
	fmt.Println("written:", written)
	// Output:
	// order 1: 202 Accepted
	// order 2: 202 Accepted
	// order 3: 202 Accepted
	// order 4: 202 Accepted
	// order 5: 202 Accepted
	// order 6: 202 Accepted
	// order 7: 503 Service Unavailable
	// server: <nil> batcher: <nil>
	// written: [1 2 3 4 5 6]
}

// message is a delivery from a queue that redelivers what is not acked.
type message struct {
	id        int
	ack, nack func()
}

// A queue consumer acknowledges a message only once its batch is written
// (AddResult, then Wait), so that no message is lost: one not acked when
// the process stops is redelivered, to this consumer's successor or another
// replica. On SIGTERM it shuts the batcher down; the consumer, blocked in
// Add by backpressure (or taking the next message), gets ErrStopped at
// once, nacks that message and stops consuming, while the batcher drains
// and writes what it took, whose acks follow. One deadline covers the
// drain, sized as for an HTTP service.
func Example_queueConsumer() {
	var mu sync.Mutex
	queue := []int{1, 2, 3, 4, 5, 6, 7, 8} // the broker: delivers in order, puts nacked messages back
	var acked []int
	sigterm := make(chan struct{}) // stands in for signal.NotifyContext(ctx, syscall.SIGTERM)
	receive := func() message {
		mu.Lock()
		defer mu.Unlock()
		id := queue[0]
		queue = queue[1:]
		if id == 7 {
			close(sigterm) // SIGTERM arrives while message 7 is being delivered
		}
		return message{
			id:   id,
			ack:  func() { mu.Lock(); acked = append(acked, id); mu.Unlock() },
			nack: func() { mu.Lock(); queue = append([]int{id}, queue...); mu.Unlock() },
		}
	}

	db := make(chan struct{}) // the database is slow: writes wait until it answers
	b := &muster.Batcher[int]{
		MaxBatchSize:         2,
		MaxConcurrentBatches: 1,
		PendingWorkCapacity:  2, // with the batch in flight: messages 1-6 taken, message 7 waits in Add
		Fire: func(ctx context.Context, ids []int) error {
			<-db
			fmt.Println("written:", ids)
			return nil
		},
	}
	if err := b.Start(); err != nil {
		fmt.Println(err)
		return
	}
	var acks sync.WaitGroup
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		ctx := context.Background()
		for {
			msg := receive()
			r, err := b.AddResult(ctx, msg.id)
			if err != nil { // ErrStopped: shutting down, stop consuming; the broker redelivers it
				msg.nack()
				return
			}
			acks.Go(func() {
				if r.Wait(ctx) == nil {
					msg.ack()
				} else {
					msg.nack()
				}
			})
		}
	}()

	<-sigterm
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- b.Shutdown(ctx) }()
	<-consumed // message 7 nacked while the database is still slow
	close(db)  // the database answers: what was taken is written, then acked
	err := <-shutdown
	acks.Wait()
	fmt.Println("shutdown:", err)
	slices.Sort(acked)
	fmt.Println("acked:", acked, "left in the queue:", queue)
	// Output:
	// written: [1 2]
	// written: [3 4]
	// written: [5 6]
	// shutdown: <nil>
	// acked: [1 2 3 4 5 6] left in the queue: [7 8]
}
