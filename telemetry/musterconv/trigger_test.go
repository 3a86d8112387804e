package musterconv_test

import (
	"testing"

	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// TestTriggerValuesMatchCore keeps the catalogue's trigger values equal to
// the names the core gives its triggers, which the middleware records.
func TestTriggerValuesMatchCore(t *testing.T) {
	for trig, want := range map[muster.Trigger]string{
		muster.TriggerSize:     musterconv.TriggerSize,
		muster.TriggerTimeout:  musterconv.TriggerTimeout,
		muster.TriggerFlush:    musterconv.TriggerFlush,
		muster.TriggerShutdown: musterconv.TriggerShutdown,
		muster.TriggerBytes:    musterconv.TriggerBytes,
	} {
		if trig.String() != want {
			t.Errorf("muster trigger %d is %q, the catalogue says %q", trig, trig.String(), want)
		}
	}
}
