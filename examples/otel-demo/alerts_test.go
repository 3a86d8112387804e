package main

import (
	"os"
	"strings"
	"testing"
)

// testdata/alerts-outage.json is what Prometheus 2.42 answered on
// /api/v1/alerts 2.5 minutes into a real-scale outage of the demo
// (-cycle 0 -outage 2m+20m, deploy/prometheus/alerts.yml): the fast page
// firing, the slow page, the ticket and the batch-wait warning pending.
func TestParseAlertsFromPrometheus(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile("testdata/alerts-outage.json")
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := parseAlerts(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []alert{
		{"MusterErrorBudgetBurn/14.4", "critical", true},
		{"MusterErrorBudgetBurn/6", "critical", false},
		{"MusterBatchWaitFarPastTimeout", "warning", false},
		{"MusterErrorBudgetBurnSlow/1", "warning", false},
	}
	if len(alerts) != len(want) {
		t.Fatalf("got %+v, want %+v", alerts, want)
	}
	for i := range want {
		if alerts[i] != want[i] {
			t.Errorf("alert %d: got %+v, want %+v", i, alerts[i], want[i])
		}
	}
	if got, want := formatAlerts(alerts), "alerts MusterErrorBudgetBurn/14.4 (critical) +3 pending"; got != want {
		t.Errorf("field %q, want %q", got, want)
	}
}

// Only muster's alerts of the demo's batcher count, once each whatever the
// instances; pages come first.
func TestParseAlertsFilters(t *testing.T) {
	t.Parallel()
	body := `{"status":"success","data":{"alerts":[
		{"labels":{"alertname":"HighCPU","severity":"critical"},"state":"firing"},
		{"labels":{"alertname":"MusterQueueNearlyFull","muster_batcher_name":"payments","severity":"warning"},"state":"firing"},
		{"labels":{"alertname":"MusterProducersBlocked","muster_batcher_name":"orders","instance":"a","severity":"warning"},"state":"firing"},
		{"labels":{"alertname":"MusterProducersBlocked","muster_batcher_name":"orders","instance":"b","severity":"warning"},"state":"firing"},
		{"labels":{"alertname":"MusterRateLimited","muster_batcher_name":"orders","severity":"info"},"state":"firing"},
		{"labels":{"alertname":"MusterNoItemsProcessed","muster_batcher_name":"orders","severity":"critical"},"state":"firing"}
	]}}`
	alerts, err := parseAlerts([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := "alerts MusterNoItemsProcessed (critical), MusterProducersBlocked (warning), MusterRateLimited (info)"
	if got := formatAlerts(alerts); got != want {
		t.Errorf("field %q, want %q", got, want)
	}
	if got := formatAlerts(nil); got != "alerts none" {
		t.Errorf("no alerts: %q, want %q", got, "alerts none")
	}
}

func TestParseAlertsErrors(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`not json`,
		`{"status":"error","errorType":"bad_data","error":"nope"}`,
	} {
		if _, err := parseAlerts([]byte(body)); err == nil || !strings.Contains(err.Error(), "/api/v1/alerts") {
			t.Errorf("%s: error %v, want one naming /api/v1/alerts", body, err)
		}
	}
}

// Without an answer, the field says so instead of "none": an unreachable
// Prometheus is not a quiet one.
func TestAlertWatchUnreachable(t *testing.T) {
	t.Parallel()
	w := newAlertWatch("http://127.0.0.1:1") // nothing listens on port 1
	if got := w.field(); got != "alerts ?" {
		t.Errorf("before a poll: %q, want %q", got, "alerts ?")
	}
	stop := make(chan struct{})
	close(stop)
	w.run(stop, 50e6) // one poll, then stop
	if got := w.field(); !strings.HasPrefix(got, "alerts ? (Prometheus: ") {
		t.Errorf("after a failed poll: %q", got)
	}
}
