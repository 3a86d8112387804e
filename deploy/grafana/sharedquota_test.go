package grafana

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// recordSharedQuota records every instrument of a shared rate limiter
// (musterconv.SharedRateLimit) for quota "orders-api", as
// ratelimit/redisrate does: round trips (one failed), their durations, the
// mode (1 for shared) and a switch.
func recordSharedQuota(ctx context.Context, m metric.Meter) error {
	quota := musterconv.RateLimitNameKey.String("orders-api")
	with := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{quota}, kv...)...))
	}
	timeout := musterconv.ErrorTypeKey.String("timeout")
	req, err := musterconv.RateLimitStoreRequests.New(m)
	if err != nil {
		return err
	}
	req.Add(ctx, 100, with())
	req.Add(ctx, 1, with(timeout))
	dur, err := musterconv.RateLimitStoreDuration.New(m)
	if err != nil {
		return err
	}
	dur.Record(ctx, 0.0004, with())
	dur.Record(ctx, 0.1, with(timeout))
	sw, err := musterconv.RateLimitSwitches.New(m)
	if err != nil {
		return err
	}
	sw.Add(ctx, 1, with(musterconv.RateLimitModeKey.String(musterconv.ModeLocal)))
	_, err = musterconv.RateLimitState.New(m, metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
		for _, mode := range []string{musterconv.ModeShared, musterconv.ModeLocal, musterconv.ModeClosed} {
			v := int64(0)
			if mode == musterconv.ModeShared {
				v = 1
			}
			o.Observe(v, with(musterconv.RateLimitModeKey.String(mode)))
		}
		return nil
	}))
	return err
}

// isSharedQuota reports whether a series is a shared rate limiter's, which
// carries the quota's name instead of the client label.
func isSharedQuota(series string) bool {
	for _, s := range musterconv.SharedRateLimit() {
		if slices.Contains(s.PrometheusSeries(), series) {
			return true
		}
	}
	return false
}

// TestSharedQuotaExposition: the shared rate limiter's series are in the
// scrape under the catalogue's names, with only the catalogue's labels.
func TestSharedQuotaExposition(t *testing.T) {
	x := realExposition(t)
	for _, s := range musterconv.SharedRateLimit() {
		for _, series := range s.PrometheusSeries() {
			if !x.has(series) {
				t.Errorf("%s: series %s not in the scrape", s.Name(), series)
			}
		}
		want := append(s.PrometheusLabels(), "job", "instance")
		if s.Kind() == musterconv.KindHistogram {
			want = append(want, "le")
		}
		got := x.labelsOf(s.PrometheusName())
		for _, l := range s.PrometheusLabels() {
			if !got[l] {
				t.Errorf("%s: label %s not in the scrape", s.Name(), l)
			}
		}
		for l := range got {
			if !slices.Contains(want, l) {
				t.Errorf("%s: unexpected label %s", s.Name(), l)
			}
		}
	}
}

// showsSharedQuota reports whether a panel reads a shared rate limiter's
// series.
func showsSharedQuota(p jsonPanel) bool {
	for _, tg := range p.Targets {
		for _, s := range musterconv.SharedRateLimit() {
			if strings.Contains(tg.Expr, s.PrometheusName()) {
				return true
			}
		}
	}
	return false
}

// startRedisForDemo starts a redis-server on a free loopback port for the
// demo's shared rate limit (-redis-addr) and returns its address. Without
// redis-server it returns "" after a loud message (the shared quota panel
// is then not checked against the demo), or fails when
// MUSTER_REQUIRE_REDIS=1.
func startRedisForDemo(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		bin, _ = exec.LookPath("redis-server")
	}
	if bin == "" {
		msg := fmt.Sprintf("\n%s\n!!! redis-server NOT FOUND: the demo runs without -redis-addr and the shared quota panel is NOT TESTED against it.\n!!! install it: apt-get update && apt-get install -y redis-server (or set $REDIS_SERVER)\n%s",
			strings.Repeat("!", 78), strings.Repeat("!", 78))
		if os.Getenv("MUSTER_REQUIRE_REDIS") == "1" {
			t.Fatalf("MUSTER_REQUIRE_REDIS=1 and %s", msg)
		}
		t.Log(msg)
		return ""
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	cmd.Dir = dir
	out, exited := startProcess(t, "redis-server", cmd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			_, err = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			n, _ := io.ReadFull(c, buf)
			c.Close()
			if err == nil && string(buf[:n]) == "+PONG\r\n" {
				return addr
			}
		}
		select {
		case <-exited:
			t.Fatalf("redis-server exited:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer PING within 10s:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
