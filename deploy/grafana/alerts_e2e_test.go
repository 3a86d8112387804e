package grafana

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The alert rules end to end: a real Prometheus scrapes the demo and
// evaluates the rules of DefaultRuleConfig rendered at 1/60 scale (an hour's
// window takes a minute, a 2m "for" two seconds). Two runs, concurrently:
//
//   - outage: the demo with a downstream outage scheduled by its -outage
//     flag. Both pages of MusterErrorBudgetBurn (burn rates 14.4 and 6) must
//     fire during the outage and resolve after it; the test logs how long
//     after the outage's start each alert fired and resolved, and every
//     other alert that fired.
//   - steady: the same demo without the outage. No alert may fire.
//
// Both demos run the same steady load: no load cycle (its brownouts and
// surges are separate incidents), no malformed orders, 1% of writes failing
// (retries absorb them), 50 orders/s per producer, and a BatchTimeout of
// 200ms (so that MusterBatchWaitFarPastTimeout's threshold, twice the
// timeout, is 400ms rather than its 100ms floor; see also its window
// below).

const alertScale = 1.0 / 60

var (
	steadyDemoArgs = []string{"-cycle", "0", "-poison-every", "0", "-failure-rate", "0.01", "-rate", "50", "-batch-timeout", "200ms", "-progress", "1s"}
	outageStart    = 20 * time.Second
	outageLength   = 30 * time.Second
	// expectedAlerts fire during the outage and resolve after it: the two
	// pages, told apart by their burn_rate label.
	expectedAlerts = []string{"MusterErrorBudgetBurn/14.4", "MusterErrorBudgetBurn/6"}
	// alertsDeadline bounds how long after the outage's end the expected
	// alerts may take to resolve: the slow page's short window (30s at this
	// scale), its keep_firing_for (5s), and scrape and evaluation lag.
	alertsDeadline = 45 * time.Second
)

// alertState is one alert (by name and burn_rate) as Prometheus reports it.
type alertState struct {
	key, state string
}

// activeAlerts returns the alerts Prometheus has pending or firing.
func activeAlerts(api string) ([]alertState, error) {
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := getJSON(api+"/api/v1/alerts", &resp); err != nil {
		return nil, err
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("/api/v1/alerts: status %q", resp.Status)
	}
	var out []alertState
	for _, a := range resp.Data.Alerts {
		key := a.Labels["alertname"]
		if br := a.Labels["burn_rate"]; br != "" {
			key += "/" + br
		}
		out = append(out, alertState{key, a.State})
	}
	return out, nil
}

// alertTimeline records, relative to a start, when each alert first fired
// and when it last stopped firing.
type alertTimeline struct {
	start    time.Time
	fired    map[string]time.Duration
	resolved map[string]time.Duration // after its first firing; deleted when it fires again
	firing   map[string]bool
	pending  map[string]bool // ever pending
}

func newTimeline(start time.Time) *alertTimeline {
	return &alertTimeline{start: start, fired: map[string]time.Duration{}, resolved: map[string]time.Duration{},
		firing: map[string]bool{}, pending: map[string]bool{}}
}

func (tl *alertTimeline) observe(now time.Time, alerts []alertState) {
	at := now.Sub(tl.start)
	firing := map[string]bool{}
	for _, a := range alerts {
		switch a.state {
		case "firing":
			firing[a.key] = true
			if _, ok := tl.fired[a.key]; !ok {
				tl.fired[a.key] = at
			}
			delete(tl.resolved, a.key)
		case "pending":
			tl.pending[a.key] = true
		}
	}
	for k := range tl.firing {
		if !firing[k] {
			tl.resolved[k] = at
		}
	}
	tl.firing = firing
}

func (tl *alertTimeline) report() string {
	var keys []string
	for k := range tl.fired {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		res := "still firing"
		if r, ok := tl.resolved[k]; ok {
			res = fmt.Sprintf("resolved at %+.1fs", r.Seconds())
		}
		fmt.Fprintf(&b, "\n  %-32s fired at %+.1fs, %s", k, tl.fired[k].Seconds(), res)
	}
	if b.Len() == 0 {
		return "\n  (no alert fired)"
	}
	return b.String()
}

// waitOutput polls a process's output for a string and returns when it was
// seen.
func waitOutput(t *testing.T, name string, out *lockedBuffer, exited <-chan struct{}, want string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if strings.Contains(out.String(), want) {
			return time.Now()
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before printing %q:\n%s", name, want, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v:\n%s", name, want, within, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestE2EAlerts(t *testing.T) {
	t.Parallel() // the end-to-end tests overlap: most of their time is waiting
	prom := findTool(t, "PROMETHEUS", "prometheus")
	if os.Getenv("MUSTER_E2E_ALERTS") == "0" {
		t.Skip("MUSTER_E2E_ALERTS=0")
	}
	cfg := DefaultRuleConfig().Scaled(alertScale)
	// MusterBatchWaitFarPastTimeout compares real waits (milliseconds that
	// do not compress) in a window that does: at 1/60 its 10m window is
	// 10s, and a second of CPU starvation on a shared 2-core machine (the
	// race-built demos, two Prometheus servers, other tests) fired it in a
	// steady run. It runs at 1/10 (60s, for 30s): a sustained delay still
	// fires it, a transient one no longer does.
	full := DefaultRuleConfig()
	cfg.WaitWindow, cfg.WaitFor = full.WaitWindow/10, full.WaitFor/10
	rules, err := AlertRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rulesFile := filepath.Join(t.TempDir(), "alerts-scaled.yml")
	if err := os.WriteFile(rulesFile, rules, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildDemo(t)
	runLength := outageStart + outageLength + alertsDeadline + 15*time.Second
	duration := []string{"-duration", (runLength + 30*time.Second).String()} // a bound, should the test die

	// The steady run lasts as long as the outage run: it ends when that
	// one does.
	var outageDone sync.WaitGroup
	outageDone.Add(1)

	t.Run("outage", func(t *testing.T) {
		t.Parallel()
		defer outageDone.Done()
		args := append(append(append([]string{}, steadyDemoArgs...), duration...),
			"-outage", fmt.Sprintf("%v+%v", outageStart, outageLength))
		addr, out, exited := runDemo(t, bin, args)
		began := waitOutput(t, "otel-demo", out, exited, "running for", 10*time.Second)
		api := startPrometheusWith(t, prom, addr, rulesFile)
		waitTargetUp(t, api)

		start := began.Add(outageStart)
		end := start.Add(outageLength)
		tl := newTimeline(start)
		deadline := end.Add(alertsDeadline)
		for {
			alerts, err := activeAlerts(api)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			tl.observe(now, alerts)
			done := now.After(end)
			for _, k := range expectedAlerts {
				_, fired := tl.fired[k]
				_, resolved := tl.resolved[k]
				done = done && fired && resolved
			}
			if done || now.After(deadline) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("outage from +0s to %+.0fs (1/60 scale: the rules' 1h is 1m); alerts, relative to the outage's start:%s",
			outageLength.Seconds(), tl.report())
		for _, k := range expectedAlerts {
			f, fired := tl.fired[k]
			r, resolved := tl.resolved[k]
			switch {
			case !fired:
				t.Errorf("%s did not fire during the outage", k)
			case f < 0 || f > outageLength:
				t.Errorf("%s fired at %+.1fs, outside the outage (0 to %v)", k, f.Seconds(), outageLength)
			case !resolved:
				t.Errorf("%s still fires %v after the outage ended", k, alertsDeadline)
			case r < outageLength:
				t.Errorf("%s resolved at %+.1fs, during the outage", k, r.Seconds())
			}
		}
	})

	t.Run("steady", func(t *testing.T) {
		t.Parallel()
		addr, out, exited := runDemo(t, bin, append(append([]string{}, steadyDemoArgs...), duration...))
		began := waitOutput(t, "otel-demo", out, exited, "running for", 10*time.Second)
		api := startPrometheusWith(t, prom, addr, rulesFile)
		waitTargetUp(t, api)
		tl := newTimeline(began)
		finished := make(chan struct{})
		go func() { outageDone.Wait(); close(finished) }()
		for polling := true; polling; {
			alerts, err := activeAlerts(api)
			if err != nil {
				t.Fatal(err)
			}
			tl.observe(time.Now(), alerts)
			select {
			case <-finished:
				polling = false
			case <-exited:
				t.Fatalf("the steady demo exited early:\n%s", out)
			case <-time.After(250 * time.Millisecond):
			}
		}
		var pending []string
		for k := range tl.pending {
			pending = append(pending, k)
		}
		sort.Strings(pending)
		t.Logf("steady run of %.0fs; pending at some point: %q; fired:%s", time.Since(began).Seconds(), pending, tl.report())
		if len(tl.fired) > 0 {
			t.Errorf("alerts fired in a steady run:%s", tl.report())
		}
	})
}
