package grafana

//go:generate go run ./cmd/genalerts -o ../prometheus/alerts.yml

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// RunbookBase is the address of the runbook, deploy/README.md; every
// alert's runbook_url is this plus "#" and the alert's name in lower case.
const RunbookBase = "https://github.com/musterhq/muster/blob/main/deploy/README.md"

// BurnWindow is one multi-window, multi-burn-rate alert of the Google SRE
// workbook ("Alerting on SLOs", its sixth iteration): it fires when the
// failure ratio over both Long and Short exceeds Factor times the error
// budget (1 - Objective). Long makes it significant (that much budget is
// gone), Short makes it reset soon after the failures stop.
type BurnWindow struct {
	Alert    string        // alert name
	Severity string        // critical pages, warning makes a ticket
	Factor   float64       // burn rate: 1 spends the whole budget in the SLO period
	Long     time.Duration // the window that measures the burn
	Short    time.Duration // the window that shows it still goes on (Long/12 in the workbook)
	For      time.Duration // how long both must hold
}

// RuleConfig parameterises the alert rules. [DefaultRuleConfig] is what
// deploy/prometheus/alerts.yml holds; [RuleConfig.Scaled] compresses every
// window for a test that runs in minutes.
type RuleConfig struct {
	// Objective is the share of processed items whose batch must succeed
	// (after retries) over the SLO period, e.g. 0.999. The error budget is
	// 1 - Objective.
	Objective float64
	// Burn lists the failure-ratio alerts.
	Burn []BurnWindow

	// SaturationWindow is the window of the saturation alerts (in flight
	// at the limit, queue nearly full, producers blocked, rate-limit
	// wait): long enough to average out the gaps between batches, short
	// enough that a sustained problem fires within a few minutes
	// (SaturationWindow + SaturationFor).
	SaturationWindow time.Duration
	// SaturationFor is how long a saturation condition must hold.
	SaturationFor time.Duration
	// ProducersBlocked is the average number of producers held by
	// backpressure at once (seconds blocked per second) that alerts.
	ProducersBlocked float64
	// RateLimitedShare is the share of the in-flight limit, on average,
	// spent waiting for rate-limit tokens that alerts.
	RateLimitedShare float64

	// StallWindow is the window in which no batch finishing, while work
	// is pending, fires MusterNoItemsProcessed (after StallFor more).
	StallWindow, StallFor time.Duration
	// WaitWindow is the window of the batch-wait quantiles of
	// MusterBatchWaitFarPastTimeout (after WaitFor more).
	WaitWindow, WaitFor time.Duration

	// JournalOldestAge is the delivery objective of a journaled batcher:
	// MusterJournalOldestItemTooOld fires when the oldest item in a
	// journal was accepted longer ago than this (for JournalFor). A
	// threshold: not scaled.
	JournalOldestAge time.Duration
	// JournalFor is how long a journal condition (oldest item too old,
	// journal over 90% of its bound) must hold.
	JournalFor time.Duration
	// JournalCorruptWindow is the window in which any corrupt record
	// skipped fires MusterJournalCorrupt.
	JournalCorruptWindow time.Duration

	// KeepFiringFor is the hysteresis of every alert (keep_firing_for,
	// Prometheus 2.42 and later): once firing, an alert stays firing this
	// long after its condition last held, so that a value hovering at a
	// threshold does not resolve and fire again and again.
	KeepFiringFor time.Duration
}

// DefaultRuleConfig returns the configuration of the committed rules: a
// 99.9% objective over 30 days with the workbook's three burn windows (2% of
// the budget in an hour and 5% in six hours page, 10% in three days makes a
// ticket), saturation that fires after 3+2 minutes, and 5 minutes of
// hysteresis.
func DefaultRuleConfig() RuleConfig {
	return RuleConfig{
		Objective: 0.999,
		Burn: []BurnWindow{
			{Alert: "MusterErrorBudgetBurn", Severity: "critical", Factor: 14.4, Long: time.Hour, Short: 5 * time.Minute, For: 2 * time.Minute},
			{Alert: "MusterErrorBudgetBurn", Severity: "critical", Factor: 6, Long: 6 * time.Hour, Short: 30 * time.Minute, For: 15 * time.Minute},
			{Alert: "MusterErrorBudgetBurnSlow", Severity: "warning", Factor: 1, Long: 3 * 24 * time.Hour, Short: 6 * time.Hour, For: time.Hour},
		},
		SaturationWindow: 3 * time.Minute,
		SaturationFor:    2 * time.Minute,
		ProducersBlocked: 1,
		RateLimitedShare: 0.5,
		StallWindow:      5 * time.Minute,
		StallFor:         5 * time.Minute,
		WaitWindow:       10 * time.Minute,
		WaitFor:          5 * time.Minute,
		KeepFiringFor:    5 * time.Minute,

		JournalOldestAge:     5 * time.Minute,
		JournalFor:           2 * time.Minute,
		JournalCorruptWindow: 10 * time.Minute,
	}
}

// Scaled returns the configuration with every window, for and
// keep_firing_for multiplied by f (0 < f <= 1), rounded to whole seconds:
// an end-to-end test renders the rules at 1/60 scale, so that an hour's
// window takes a minute. Thresholds are not scaled.
func (c RuleConfig) Scaled(f float64) RuleConfig {
	s := func(d time.Duration) time.Duration {
		return (time.Duration(float64(d) * f)).Round(time.Second)
	}
	out := c
	out.Burn = make([]BurnWindow, len(c.Burn))
	for i, b := range c.Burn {
		b.Long, b.Short, b.For = s(b.Long), s(b.Short), s(b.For)
		out.Burn[i] = b
	}
	out.SaturationWindow, out.SaturationFor = s(c.SaturationWindow), s(c.SaturationFor)
	out.StallWindow, out.StallFor = s(c.StallWindow), s(c.StallFor)
	out.WaitWindow, out.WaitFor = s(c.WaitWindow), s(c.WaitFor)
	out.KeepFiringFor = s(c.KeepFiringFor)
	out.JournalFor, out.JournalCorruptWindow = s(c.JournalFor), s(c.JournalCorruptWindow)
	return out
}

// validate reports what makes the configuration unusable.
func (c RuleConfig) validate() error {
	var errs []error
	if !(c.Objective > 0 && c.Objective < 1) {
		errs = append(errs, fmt.Errorf("objective %g: want a share in (0, 1), such as 0.999", c.Objective))
	}
	if len(c.Burn) == 0 {
		errs = append(errs, errors.New("no burn windows"))
	}
	for i, b := range c.Burn {
		switch {
		case b.Alert == "" || b.Severity == "":
			errs = append(errs, fmt.Errorf("burn window %d: no alert name or severity", i))
		case !(b.Factor > 0):
			errs = append(errs, fmt.Errorf("burn window %d: factor %g: want > 0", i, b.Factor))
		case b.Factor*(1-c.Objective) >= 1:
			errs = append(errs, fmt.Errorf("burn window %d: factor %g x budget %g reaches 100%% failures: it could never fire", i, b.Factor, 1-c.Objective))
		case b.Short < time.Second || b.Long <= b.Short:
			errs = append(errs, fmt.Errorf("burn window %d: want 1s <= short (%v) < long (%v)", i, b.Short, b.Long))
		}
	}
	for name, d := range map[string]time.Duration{
		"saturation window": c.SaturationWindow, "stall window": c.StallWindow, "wait window": c.WaitWindow,
		"journal oldest age": c.JournalOldestAge, "journal corrupt window": c.JournalCorruptWindow,
	} {
		if d < time.Second {
			errs = append(errs, fmt.Errorf("%s %v: want at least 1s", name, d))
		}
	}
	if !(c.ProducersBlocked > 0) || !(c.RateLimitedShare > 0) {
		errs = append(errs, fmt.Errorf("thresholds: producers blocked %g, rate-limited share %g: want > 0", c.ProducersBlocked, c.RateLimitedShare))
	}
	if c.SaturationFor < 0 || c.StallFor < 0 || c.WaitFor < 0 || c.KeepFiringFor < 0 || c.JournalFor < 0 {
		errs = append(errs, errors.New("negative for or keep_firing_for"))
	}
	return errors.Join(errs...)
}

// alertRule is one rule of the generated file.
type alertRule struct {
	comment     string // above the rule, without "# "
	name        string
	expr        string
	forDur      time.Duration
	keepFiring  time.Duration
	labels      [][2]string // severity first
	summary     string
	description string
}

// Label sets of the rules. The failure ratio is an objective of a batcher
// in a service (job), across its processes; saturation is per process.
var (
	perJob      = []string{"job", labelClient}
	perInstance = []string{"job", "instance", labelClient}
)

// dur formats a duration as Prometheus writes one (1h30m, 72h, 5s).
func dur(d time.Duration) string { return model.Duration(d).String() }

// num formats a threshold without float noise (14.4 * 0.001 = 0.0144).
func num(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e12)/1e12, 'g', -1, 64)
}

// failureRatio is the share of processed items that failed for good over w,
// per job and batcher.
func failureRatio(w time.Duration) string {
	by := strings.Join(perJob, ", ")
	return fmt.Sprintf("sum by (%[1]s) (rate(%[2]s{%[3]s}[%[4]s]))\n  / on (%[1]s)\nsum by (%[1]s) (rate(%[2]s[%[4]s]))",
		by, itemProcessed, failed, dur(w))
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// alertRules returns the rules of a configuration, in file order.
func (c RuleConfig) alertRules() []alertRule {
	budget := 1 - c.Objective
	inst := strings.Join(perInstance, ", ")
	var rules []alertRule
	for _, b := range c.Burn {
		threshold := num(b.Factor * budget)
		rules = append(rules, alertRule{
			comment: fmt.Sprintf("Burn rate %s: %s of items failing, %s x the error budget of a %s objective, over %s and still over %s, for %s.",
				num(b.Factor), humanPercent(b.Factor*budget), num(b.Factor), humanPercent(c.Objective), dur(b.Long), dur(b.Short), dur(b.For)),
			name: b.Alert,
			expr: "(\n" + indent(failureRatio(b.Long), "  ") + "\n  > " + threshold + "\n)\nand on (" + strings.Join(perJob, ", ") + ")\n(\n" +
				indent(failureRatio(b.Short), "  ") + "\n  > " + threshold + "\n)",
			forDur: b.For, keepFiring: c.KeepFiringFor,
			labels:  [][2]string{{"severity", b.Severity}, {"burn_rate", num(b.Factor)}, {"long_window", dur(b.Long)}},
			summary: "{{ $labels.muster_batcher_name }} ({{ $labels.job }}) spends its error budget " + num(b.Factor) + "x too fast",
			description: fmt.Sprintf("{{ $value | humanizePercentage }} of the items processed by batcher {{ $labels.muster_batcher_name }} ({{ $labels.job }}) failed for good (after retries) over the last %s, and still over the last %s; the objective allows %s. Burning %sx as fast as allowed or faster, the %s budget lasts %s or less.",
				dur(b.Long), dur(b.Short), humanPercent(budget), num(b.Factor), "30-day", budgetLasts(b.Factor)),
		})
	}
	sat := dur(c.SaturationWindow)
	rules = append(rules,
		alertRule{
			comment: fmt.Sprintf("Batches in flight at MaxConcurrentBatches on average over %s (95%% of the limit, so that the gap between a batch's done and the next fire does not reset it). Clients without a limit are left out.", sat),
			name:    "MusterInflightAtLimit",
			expr: fmt.Sprintf("sum by (%[1]s) (avg_over_time(%[2]s[%[3]s]))\n  >= on (%[1]s)\n0.95 * sum by (%[1]s) (%[4]s > 0)",
				inst, batchInflight, sat, inflightLimit),
			forDur: c.SaturationFor, keepFiring: c.KeepFiringFor,
			labels:      [][2]string{{"severity", "warning"}},
			summary:     "{{ $labels.muster_batcher_name }}: in-flight batches pinned at the limit",
			description: fmt.Sprintf("Batcher {{ $labels.muster_batcher_name }} on {{ $labels.instance }} ({{ $labels.job }}) has had {{ $value | humanize }} batches in flight on average over %s, its MaxConcurrentBatches: the downstream (or the rate limit) sets the pace and backpressure reaches producers.", sat),
		},
		alertRule{
			comment: fmt.Sprintf("The queue over 90%% full on average over %s: producers block once it is full. Capacity 0 (an unbuffered queue) never counts.", sat),
			name:    "MusterQueueNearlyFull",
			expr: fmt.Sprintf("sum by (%[1]s) (avg_over_time(%[2]s[%[3]s]))\n  / on (%[1]s)\nsum by (%[1]s) (%[4]s > 0)\n> 0.9",
				inst, queueSize, sat, queueCapacity),
			forDur: c.SaturationFor, keepFiring: c.KeepFiringFor,
			labels:      [][2]string{{"severity", "warning"}},
			summary:     "{{ $labels.muster_batcher_name }}: queue over 90% full",
			description: fmt.Sprintf("The queue of batcher {{ $labels.muster_batcher_name }} on {{ $labels.instance }} ({{ $labels.job }}) has been {{ $value | humanizePercentage }} full on average over %s; producers block once it is full.", sat),
		},
		alertRule{
			comment: fmt.Sprintf("Producers held by backpressure: on average more than %s producer(s) blocked in Add at once over %s (seconds blocked per second).", num(c.ProducersBlocked), sat),
			name:    "MusterProducersBlocked",
			expr: fmt.Sprintf("sum by (%[1]s) (rate(%[2]s[%[3]s]))\n> %[4]s",
				inst, addBlocked.sum, sat, num(c.ProducersBlocked)),
			forDur: c.SaturationFor, keepFiring: c.KeepFiringFor,
			labels:      [][2]string{{"severity", "warning"}},
			summary:     "{{ $labels.muster_batcher_name }}: producers blocked by backpressure",
			description: fmt.Sprintf("On average {{ $value | humanize }} producers of batcher {{ $labels.muster_batcher_name }} on {{ $labels.instance }} ({{ $labels.job }}) were held in Add at any moment over %s: the batcher cannot keep up, so callers wait (and those with deadlines give up).", sat),
		},
		alertRule{
			comment: fmt.Sprintf("Rate limited: batches waiting for tokens take, on average over %s, more than %s of the in-flight limit (Little's law: seconds waited per second is the mean number waiting).", sat, humanPercent(c.RateLimitedShare)),
			name:    "MusterRateLimited",
			expr: fmt.Sprintf("sum by (%[1]s) (rate(%[2]s[%[3]s]))\n  / on (%[1]s)\nsum by (%[1]s) (%[4]s > 0)\n> %[5]s",
				inst, rateLimitWait.sum, sat, inflightLimit, num(c.RateLimitedShare)),
			forDur: c.SaturationFor, keepFiring: c.KeepFiringFor,
			labels:      [][2]string{{"severity", "info"}},
			summary:     "{{ $labels.muster_batcher_name }}: the rate limit sets the pace",
			description: fmt.Sprintf("Batches of batcher {{ $labels.muster_batcher_name }} on {{ $labels.instance }} ({{ $labels.job }}) held {{ $value | humanizePercentage }} of the in-flight limit waiting for rate-limit tokens on average over %s: the limit, not the downstream, sets the throughput.", sat),
		},
		alertRule{
			comment: fmt.Sprintf("No metric carries BatchTimeout, so the rule takes the average wait of timeout-triggered batches for it (exact, from the histogram's _sum and _count: a median from the buckets would sit mid-bucket, and batches a little past the timeout's bucket edge would look twice as late). It fires when the p99 wait of all batches over %s is over twice that and over 100 ms: full batches wait for an in-flight slot, or the process is starved.", dur(c.WaitWindow)),
			name:    "MusterBatchWaitFarPastTimeout",
			expr: fmt.Sprintf("histogram_quantile(0.99, sum by (%[1]s, le) (rate(%[2]s[%[3]s])))\n  > on (%[1]s)\n2 * (\n  sum by (%[1]s) (rate(%[5]s{%[4]s=\"timeout\"}[%[3]s]))\n    / on (%[1]s)\n  sum by (%[1]s) (rate(%[6]s{%[4]s=\"timeout\"}[%[3]s]))\n)\nand on (%[1]s)\nhistogram_quantile(0.99, sum by (%[1]s, le) (rate(%[2]s[%[3]s])))\n> 0.1",
				strings.Join(perJob, ", "), batchWait.bucket, dur(c.WaitWindow), labelTrigger, batchWait.sum, batchWait.count),
			forDur: c.WaitFor, keepFiring: c.KeepFiringFor,
			labels:      [][2]string{{"severity", "warning"}},
			summary:     "{{ $labels.muster_batcher_name }}: batches wait far past BatchTimeout",
			description: fmt.Sprintf("The p99 batch wait of batcher {{ $labels.muster_batcher_name }} ({{ $labels.job }}) over %s is {{ $value | humanizeDuration }}, over twice the wait of its timeout-triggered batches (about BatchTimeout): full batches wait for an in-flight slot or the process is starved.", dur(c.WaitWindow)),
		},
		alertRule{
			comment: fmt.Sprintf("Work is pending (items accepted, batches in flight or items queued) and no batch finished over %s: a hung Fire, a Notifier never called, or a downstream that never answers.", dur(c.StallWindow)),
			name:    "MusterNoItemsProcessed",
			expr: fmt.Sprintf("(\n  sum by (%[1]s) (rate(%[2]s[%[3]s])) > 0\n  or\n  sum by (%[1]s) (%[4]s) > 0\n  or\n  sum by (%[1]s) (%[5]s) > 0\n)\nunless on (%[1]s)\nsum by (%[1]s) (rate(%[6]s[%[3]s])) > 0",
				inst, itemAdded, dur(c.StallWindow), batchInflight, queueSize, itemProcessed),
			forDur: c.StallFor, keepFiring: c.KeepFiringFor,
			labels:      [][2]string{{"severity", "critical"}},
			summary:     "{{ $labels.muster_batcher_name }}: no items processed while work is pending",
			description: fmt.Sprintf("Batcher {{ $labels.muster_batcher_name }} on {{ $labels.instance }} ({{ $labels.job }}) has items added, in flight or queued, and no batch finished over %s: items are stuck and will be lost on restart.", dur(c.StallWindow)),
		},
		alertRule{
			comment: fmt.Sprintf("The delivery objective of a journaled batcher: the oldest item in its journal was accepted more than %s ago, for %s. Items are kept, not lost, but they are late: the downstream fails or never answers, or the batcher is too slow for its load.", dur(c.JournalOldestAge), dur(c.JournalFor)),
			name:    "MusterJournalOldestItemTooOld",
			expr: fmt.Sprintf("max by (%[1]s) (%[2]s)\n> %[3]s",
				inst, journalOldest, num(c.JournalOldestAge.Seconds())),
			forDur: c.JournalFor, keepFiring: c.KeepFiringFor,
			labels:      [][2]string{{"severity", "critical"}},
			summary:     "{{ $labels.muster_batcher_name }}: journaled items waiting too long",
			description: fmt.Sprintf("The oldest item in the journal of batcher {{ $labels.muster_batcher_name }} on {{ $labels.instance }} ({{ $labels.job }}) was accepted {{ $value | humanizeDuration }} ago, past the %s objective: items are kept but not delivered.", dur(c.JournalOldestAge)),
		},
		alertRule{
			comment: fmt.Sprintf("A journal over 90%% of its byte bound for %s: at the bound, Add waits or fails as the Overflow policy says. Journals without a bound never count.", dur(c.JournalFor)),
			name:    "MusterJournalFilling",
			expr: fmt.Sprintf("sum by (%[1]s) (%[2]s)\n  / on (%[1]s)\nsum by (%[1]s) (%[3]s > 0)\n> 0.9",
				inst, journalBytes, journalLimit),
			forDur: c.JournalFor, keepFiring: c.KeepFiringFor,
			labels:      [][2]string{{"severity", "warning"}},
			summary:     "{{ $labels.muster_batcher_name }}: journal over 90% full",
			description: "The journal of batcher {{ $labels.muster_batcher_name }} on {{ $labels.instance }} ({{ $labels.job }}) is {{ $value | humanizePercentage }} of its byte bound: when full, producers wait or are refused.",
		},
		alertRule{
			comment: fmt.Sprintf("A journal found corrupt records over the last %s and skipped them (for %s): their items are lost (a torn write after a power loss, a bad disk, a file changed by hand).", dur(c.JournalCorruptWindow), dur(c.JournalFor)),
			name:    "MusterJournalCorrupt",
			expr: fmt.Sprintf("sum by (%[1]s) (increase(%[2]s[%[3]s]))\n> 0",
				inst, journalCorrupt, dur(c.JournalCorruptWindow)),
			forDur: c.JournalFor, keepFiring: c.KeepFiringFor,
			labels:      [][2]string{{"severity", "warning"}},
			summary:     "{{ $labels.muster_batcher_name }}: corrupt journal records skipped",
			description: fmt.Sprintf("The journal of batcher {{ $labels.muster_batcher_name }} on {{ $labels.instance }} ({{ $labels.job }}) skipped {{ $value | humanize }} corrupt records over the last %s: their items were lost.", dur(c.JournalCorruptWindow)),
		},
	)
	return rules
}

// humanPercent formats a share as Prometheus's humanizePercentage would
// for round values (0.001 -> 0.1%).
func humanPercent(v float64) string { return num(v*100) + "%" }

// budgetLasts says how long a 30-day budget lasts at a burn rate.
func budgetLasts(factor float64) string {
	d := time.Duration(float64(30*24*time.Hour) / factor).Round(time.Hour)
	if d >= 48*time.Hour {
		return num(math.Round(d.Hours()/24*10)/10) + " days"
	}
	return num(d.Hours()) + " hours"
}

// yamlString quotes a string for a YAML double-quoted scalar.
func yamlString(s string) string { return strconv.Quote(s) }

// AlertRules renders the Prometheus rule file of a configuration. The
// committed deploy/prometheus/alerts.yml is AlertRules(DefaultRuleConfig()).
func AlertRules(c RuleConfig) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("grafana: alert rules: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Prometheus alerting rules for services that use muster and export its
# metrics with github.com/musterhq/muster/telemetry (metric and label names:
# telemetry/musterconv). GENERATED by deploy/grafana (cd deploy/grafana &&
# go generate ./...) from RuleConfig; edit alerts.go, not this file.
# Load with rule_files in prometheus.yml (Prometheus 2.42 or later, for
# keep_firing_for). What each alert means and what to do: deploy/README.md
# ("Alert rules"); unit tests: alerts_test.yml (promtool test rules).
#
# Objective: %s of processed items succeed (after retries). Failure-ratio
# alerts are multi-window, multi-burn-rate (Google SRE workbook) and keep
# job and muster_batcher_name; saturation alerts are per process and keep
# instance too. Every alert keeps firing for %s after its condition last
# held, so that a value hovering at a threshold does not flap.
groups:
  - name: muster
    rules:
`, humanPercent(c.Objective), dur(c.KeepFiringFor))
	for i, r := range c.alertRules() {
		if i > 0 {
			b.WriteString("\n")
		}
		for _, line := range wrap(r.comment, 70) {
			fmt.Fprintf(&b, "      # %s\n", line)
		}
		fmt.Fprintf(&b, "      - alert: %s\n        expr: |\n%s\n", r.name, indent(r.expr, "          "))
		if r.forDur > 0 {
			fmt.Fprintf(&b, "        for: %s\n", dur(r.forDur))
		}
		if r.keepFiring > 0 {
			fmt.Fprintf(&b, "        keep_firing_for: %s\n", dur(r.keepFiring))
		}
		b.WriteString("        labels:\n")
		for _, l := range r.labels {
			fmt.Fprintf(&b, "          %s: %s\n", l[0], yamlString(l[1]))
		}
		fmt.Fprintf(&b, "        annotations:\n          summary: %s\n          description: %s\n          runbook_url: %s\n",
			yamlString(r.summary), yamlString(r.description), yamlString(RunbookBase+"#"+strings.ToLower(r.name)))
	}
	return []byte(b.String()), nil
}

// wrap breaks text into lines of at most width characters.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
