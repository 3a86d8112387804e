package musterconv_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/musterhq/muster/telemetry/musterconv"
)

func TestSharedRateLimitSpecs(t *testing.T) {
	specs := musterconv.SharedRateLimit()
	if len(specs) != 4 {
		t.Fatalf("SharedRateLimit() has %d specs, want 4", len(specs))
	}
	for _, s := range specs {
		if !strings.HasPrefix(s.Name(), "muster.ratelimit.") {
			t.Errorf("%q is outside muster.ratelimit.", s.Name())
		}
		if slices.ContainsFunc(musterconv.All(), func(a musterconv.Spec) bool { return a.Name() == s.Name() }) {
			t.Errorf("%q is also in All()", s.Name())
		}
		keys := s.AttributeKeys()
		if keys[0] != musterconv.RateLimitNameKey || slices.Contains(keys, musterconv.BatcherNameKey) {
			t.Errorf("%s: attribute keys %v, want %s first and no batcher name", s.Name(), keys, musterconv.RateLimitNameKey)
		}
		if got := s.PrometheusLabels()[0]; got != "muster_ratelimit_name" {
			t.Errorf("%s: first label %q", s.Name(), got)
		}
		if s.Description() == "" || !strings.HasSuffix(s.Description(), ".") {
			t.Errorf("%s: description %q: want a sentence", s.Name(), s.Description())
		}
		want := strings.ReplaceAll(s.Name(), ".", "_")
		switch s.Kind() {
		case musterconv.KindCounter:
			want += "_total"
		case musterconv.KindHistogram:
			want += "_seconds"
		}
		if s.PrometheusName() != want {
			t.Errorf("%s: Prometheus name %q, want %q", s.Name(), s.PrometheusName(), want)
		}
	}
}
