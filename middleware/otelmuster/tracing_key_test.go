package otelmuster_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

// keySampler samples everything and remembers the muster.batch.key values
// it was shown at span start.
type keySampler struct {
	mu   sync.Mutex
	keys []string
}

func (s *keySampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kv := range p.Attributes {
		if kv.Key == "muster.batch.key" {
			s.keys = append(s.keys, kv.Value.AsString())
		}
	}
	return sdktrace.AlwaysSample().ShouldSample(p)
}

func (s *keySampler) Description() string { return "keySampler" }

func (s *keySampler) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(slices.Values(s.keys))
}

// batchKeys returns the muster.batch.key of each ended "fire {name}" span,
// sorted; a span without one counts as "<none>".
func batchKeys(sr *tracetest.SpanRecorder, name string) []string {
	var keys []string
	for _, s := range spansNamed(sr, "fire "+name) {
		v, ok := attrs(s.Attributes())["muster.batch.key"]
		if !ok {
			keys = append(keys, "<none>")
			continue
		}
		if v.Type() != attribute.STRING {
			keys = append(keys, "<not a string>")
			continue
		}
		keys = append(keys, v.AsString())
	}
	slices.Sort(keys)
	return keys
}

// A Keyed client's batch spans carry muster.batch.key, given at start so
// that samplers see it: string keys as they are, other keys in fmt's form.
func TestTracingBatchKey(t *testing.T) {
	sampler := &keySampler{}
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(sr))
	hooks := otelmuster.NewTracing(otelmuster.WithTracerProvider(tp))

	type order struct {
		region string
		shard  int
	}
	byRegion := &muster.Keyed[string, order]{
		Name:         "orders",
		Key:          func(o order) string { return o.region },
		MaxBatchSize: 2,
		BatchTimeout: time.Hour,
		Fire:         func(context.Context, []order) error { return nil },
		Hooks:        hooks,
	}
	mustStart(t, byRegion.Start)
	for _, r := range []string{"eu", "us", "eu", "us", "ap"} {
		mustNil(t, byRegion.Add(remoteCtx(1, true), order{region: r}))
	}
	mustNil(t, byRegion.Stop()) // ap fires on shutdown

	if got, want := batchKeys(sr, "orders"), []string{"ap", "eu", "us"}; !slices.Equal(got, want) {
		t.Errorf("batch keys %q, want %q", got, want)
	}

	type shardKey struct {
		Region string
		Shard  int
	}
	byShard := &muster.Keyed[shardKey, order]{
		Name:         "shards",
		Key:          func(o order) shardKey { return shardKey{o.region, o.shard} },
		MaxBatchSize: 1,
		Fire:         func(context.Context, []order) error { return nil },
		Hooks:        hooks,
	}
	byInt := &muster.Keyed[int, order]{
		Name:         "ints",
		Key:          func(o order) int { return o.shard },
		MaxBatchSize: 1,
		Fire:         func(context.Context, []order) error { return nil },
		Hooks:        hooks,
	}
	mustStart(t, byShard.Start)
	mustStart(t, byInt.Start)
	mustNil(t, byShard.Add(context.Background(), order{region: "eu", shard: 3}))
	mustNil(t, byInt.Add(context.Background(), order{shard: 42}))
	mustNil(t, byShard.Stop())
	mustNil(t, byInt.Stop())
	if got, want := batchKeys(sr, "shards"), []string{"{eu 3}"}; !slices.Equal(got, want) {
		t.Errorf("struct key: %q, want %q", got, want)
	}
	if got, want := batchKeys(sr, "ints"), []string{"42"}; !slices.Equal(got, want) {
		t.Errorf("int key: %q, want %q", got, want)
	}

	// A plain Batcher's spans have no key.
	plain := &muster.Batcher[int]{
		Name:         "plain",
		MaxBatchSize: 1,
		Fire:         func(context.Context, []int) error { return nil },
		Hooks:        hooks,
	}
	mustStart(t, plain.Start)
	mustNil(t, plain.Add(context.Background(), 1))
	mustNil(t, plain.Stop())
	if got, want := batchKeys(sr, "plain"), []string{"<none>"}; !slices.Equal(got, want) {
		t.Errorf("plain batcher: %q, want %q", got, want)
	}

	// The sampler saw every key at start.
	if got, want := sampler.seen(), []string{"42", "ap", "eu", "us", "{eu 3}"}; !slices.Equal(got, want) {
		t.Errorf("sampler saw keys %q, want %q", got, want)
	}
}
