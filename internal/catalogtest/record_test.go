package catalogtest

import (
	"context"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// TestRecordEveryInstrument: Record leaves a measurement on every
// instrument of the catalogue, and on no other.
func TestRecordEveryInstrument(t *testing.T) {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)
	if err := Record(ctx, mp.Meter("test")); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = true
		}
	}
	for _, s := range Catalogue() {
		if !got[s.Name()] {
			t.Errorf("%s: no measurement", s.Name())
		}
		delete(got, s.Name())
	}
	for n := range got {
		t.Errorf("%s: recorded, not in the catalogue", n)
	}
}

// TestRecordNamesMissingAndStale: an instrument without a recorder, and a
// recorder without its instrument, are errors naming the instrument.
func TestRecordNamesMissingAndStale(t *testing.T) {
	ctx := context.Background()
	m := sdkmetric.NewMeterProvider().Meter("test")
	unknown := musterconv.SharedRateLimit()[0]
	err := record(ctx, m, append(Catalogue(), unknown))
	if err == nil || !strings.Contains(err.Error(), "no recorder for "+unknown.Name()) {
		t.Errorf("with %s added: %v, want an error naming it", unknown.Name(), err)
	}
	specs := Catalogue()
	err = record(ctx, m, specs[1:])
	if err == nil || !strings.Contains(err.Error(), "recorder for "+specs[0].Name()+", which is not in the catalogue") {
		t.Errorf("without %s: %v, want an error naming it", specs[0].Name(), err)
	}
}
