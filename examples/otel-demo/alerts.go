package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// alertWatch asks a Prometheus (-prometheus) which of muster's alerts are
// firing, for the progress line. The demo does not evaluate the rules
// itself: Prometheus evaluates deploy/prometheus/alerts.yml on what it
// scraped, and the progress line says what Prometheus says, so a person
// watching the demo sees the alerts an on-call engineer would receive, with
// their real delays (windows, "for", keep_firing_for).
type alertWatch struct {
	url    string // base URL of Prometheus
	client *http.Client

	mu     sync.Mutex
	last   []alert // the latest answer, sorted
	err    error   // the latest poll's error, nil after a success
	polled bool    // a poll has completed
}

// alert is one of muster's alerts as Prometheus reports it.
type alert struct {
	name     string // alertname, with its burn_rate when it has one: MusterErrorBudgetBurn/14.4
	severity string
	firing   bool // else pending
}

func newAlertWatch(base string) *alertWatch {
	return &alertWatch{url: strings.TrimSuffix(base, "/"), client: &http.Client{Timeout: 2 * time.Second}}
}

// run polls every interval until stop is closed.
func (w *alertWatch) run(stop <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), every)
		alerts, err := w.fetch(ctx)
		cancel()
		w.mu.Lock()
		w.polled, w.err = true, err
		if err == nil {
			w.last = alerts
		}
		w.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// fetch reads /api/v1/alerts and keeps muster's alerts (alertname Muster…)
// of the demo's batcher ("orders"), or of no batcher in particular.
func (w *alertWatch) fetch(ctx context.Context) ([]alert, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url+"/api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/api/v1/alerts: %s", resp.Status)
	}
	return parseAlerts(body)
}

// parseAlerts decodes an /api/v1/alerts answer.
func parseAlerts(body []byte) ([]alert, error) {
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("/api/v1/alerts: %v", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("/api/v1/alerts: status %q", r.Status)
	}
	seen := map[alert]bool{}
	var out []alert
	for _, a := range r.Data.Alerts {
		name := a.Labels["alertname"]
		if !strings.HasPrefix(name, "Muster") {
			continue
		}
		if b, ok := a.Labels["muster_batcher_name"]; ok && b != batcherName {
			continue
		}
		if br := a.Labels["burn_rate"]; br != "" {
			name += "/" + br
		}
		al := alert{name: name, severity: a.Labels["severity"], firing: a.State == "firing"}
		if !seen[al] { // one per name and state, whatever the instances
			seen[al] = true
			out = append(out, al)
		}
	}
	slices.SortFunc(out, func(a, b alert) int {
		return cmp.Or(cmp.Compare(severityRank(a.severity), severityRank(b.severity)), strings.Compare(a.name, b.name))
	})
	return out, nil
}

func severityRank(s string) int {
	switch s {
	case "critical":
		return 0
	case "warning":
		return 1
	case "info":
		return 2
	}
	return 3
}

// field is the progress line's alerts field.
func (w *alertWatch) field() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !w.polled:
		return "alerts ?"
	case w.err != nil:
		return "alerts ? (Prometheus: " + w.err.Error() + ")"
	}
	return formatAlerts(w.last)
}

// formatAlerts names the alerts firing, pages first, and counts the
// pending ones (their condition holds, their "for" has not passed):
//
//	alerts MusterErrorBudgetBurn/14.4 (critical), MusterProducersBlocked (warning) +1 pending
func formatAlerts(alerts []alert) string {
	var firing []string
	pending := 0
	for _, a := range alerts {
		if !a.firing {
			pending++
			continue
		}
		s := a.name
		if a.severity != "" {
			s += " (" + a.severity + ")"
		}
		firing = append(firing, s)
	}
	out := "alerts none"
	if len(firing) > 0 {
		out = "alerts " + strings.Join(firing, ", ")
	}
	if pending > 0 {
		out += fmt.Sprintf(" +%d pending", pending)
	}
	return out
}
