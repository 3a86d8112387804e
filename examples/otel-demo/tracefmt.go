package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// spanWriter receives the compact JSON the telemetry package's trace writer
// makes (one span per line) and writes each span to w: as it came ("json"),
// or as one readable line ("text"), which is what a terminal or a quick grep
// wants. It counts the spans for the summary.
type spanWriter struct {
	mu    sync.Mutex
	w     io.Writer
	text  bool
	buf   []byte
	out   []byte
	spans int64
}

func newSpanWriter(w io.Writer, format string) *spanWriter {
	return &spanWriter{w: w, text: format == "text"}
}

// Write takes any part of the stream; complete lines are converted and
// written, the rest waits for the next call.
func (s *spanWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	s.out = s.out[:0]
	rest := s.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		s.out = s.appendSpan(s.out, rest[:i])
		rest = rest[i+1:]
	}
	s.buf = append(s.buf[:0], rest...)
	if len(s.out) > 0 {
		if _, err := s.w.Write(s.out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Spans returns how many spans were written.
func (s *spanWriter) Spans() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spans
}

func (s *spanWriter) appendSpan(out, line []byte) []byte {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return out
	}
	s.spans++
	if !s.text {
		return append(append(out, line...), '\n')
	}
	var sp jsonSpan
	if err := json.Unmarshal(line, &sp); err != nil {
		return append(append(out, line...), '\n') // not ours to judge: keep it
	}
	return append(append(out, formatSpan(&sp)...), '\n')
}

// jsonSpan is the part of the SDK's span JSON (tracetest.SpanStub) the text
// format shows.
type jsonSpan struct {
	Name        string
	SpanContext jsonSpanContext
	Parent      jsonSpanContext
	SpanKind    int
	StartTime   time.Time
	EndTime     time.Time
	Attributes  []jsonKV
	Events      []struct {
		Name       string
		Attributes []jsonKV
	}
	Links []struct {
		SpanContext jsonSpanContext
	}
	Status struct {
		Code        string
		Description string
	}
}

type jsonSpanContext struct {
	TraceID string
	SpanID  string
}

type jsonKV struct {
	Key   string
	Value struct {
		Type  string
		Value any
	}
}

// secondsKeys are attributes recorded in seconds, shown as durations.
var secondsKeys = map[string]bool{
	"muster.batch.first_item_age": true,
	"muster.batch.slot_wait":      true,
	"muster.wait.duration":        true,
	"muster.retry.backoff":        true,
}

// shortKeys are attribute names shortened in the text format; attributes
// mapped to "" are left out (they repeat the span name).
var shortKeys = map[string]string{
	"messaging.batch.message_count": "size",
	"muster.batcher.name":           "",
	"muster.batch.trigger":          "trigger",
	"muster.batch.max_size":         "max",
	"muster.batch.id":               "batch",
	"muster.batch.first_item_age":   "age",
	"muster.batch.slot_wait":        "slot_wait",
	"muster.batch.links.dropped":    "links_dropped",
	"db.operation.name":             "",
	"db.collection.name":            "",
	"db.operation.batch.size":       "size",
	"http.response.status_code":     "status",
	"demo.producer":                 "producer",
	"demo.orders":                   "orders",
	"demo.orders.added":             "added",
	"error.message":                 "",
	"muster.retry.attempt":          "attempt",
	"muster.retry.backoff":          "backoff",
	"muster.wait.duration":          "waited",
	"muster.wait.tokens":            "tokens",
	"muster.wait.reason":            "",
}

// formatSpan makes the text line of a span:
//
//	03:01:18.242  118ms  fire orders   trace=c532…(32 hex) span=db24…(16 hex) ok trigger=size size=50 … | ratelimit.wait waited=8ms tokens=50; retry attempt=1 backoff=47ms error.type=unavailable | links=12 [2713cbfe 4c5b2bd2 …]
//
// Links come last and show the first 8 hex digits of each linked trace:
// grep for the start of a request's trace id to find the batch that carried
// its orders.
func formatSpan(sp *jsonSpan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %8s  %-13s trace=%s span=%s", sp.StartTime.Local().Format("15:04:05.000"),
		fmtDur(sp.EndTime.Sub(sp.StartTime)), sp.Name, sp.SpanContext.TraceID, sp.SpanContext.SpanID)
	if p := sp.Parent.SpanID; p != "" && strings.Trim(p, "0") != "" {
		fmt.Fprintf(&b, " parent=%s", p)
	}
	switch sp.Status.Code {
	case "Error":
		b.WriteString(" ERROR")
	default:
		b.WriteString(" ok")
	}
	writeAttrs(&b, sp.Attributes)
	for i, e := range sp.Events {
		if i == 0 {
			b.WriteString(" |")
		} else {
			b.WriteByte(';')
		}
		writeEvent(&b, e.Name, e.Attributes)
	}
	if sp.Status.Code == "Error" && sp.Status.Description != "" {
		fmt.Fprintf(&b, " | %s", sp.Status.Description)
	}
	if len(sp.Links) > 0 {
		fmt.Fprintf(&b, " | links=%d [", len(sp.Links))
		for i, l := range sp.Links {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(l.SpanContext.TraceID[:min(8, len(l.SpanContext.TraceID))])
		}
		b.WriteByte(']')
	}
	return b.String()
}

func writeEvent(b *strings.Builder, name string, attrs []jsonKV) {
	switch name {
	case "muster.ratelimit.wait":
		b.WriteString(" ratelimit.wait")
	case "muster.retry":
		b.WriteString(" retry")
	case "exception":
		b.WriteString(" exception")
		for _, kv := range attrs {
			if kv.Key == "exception.message" {
				fmt.Fprintf(b, " %q", fmt.Sprint(kv.Value.Value))
			}
		}
		return
	default:
		b.WriteString(" " + name)
	}
	writeAttrs(b, attrs)
}

func writeAttrs(b *strings.Builder, attrs []jsonKV) {
	for _, kv := range attrs {
		k := kv.Key
		if short, ok := shortKeys[k]; ok {
			if short == "" {
				continue
			}
			k = short
		} else {
			k = strings.TrimPrefix(k, "muster.")
		}
		fmt.Fprintf(b, " %s=%s", k, attrValue(kv))
	}
}

func attrValue(kv jsonKV) string {
	v := kv.Value.Value
	if f, ok := v.(float64); ok {
		if secondsKeys[kv.Key] {
			return fmtDur(time.Duration(f * float64(time.Second)))
		}
		return strconv.FormatFloat(f, 'g', 4, 64)
	}
	s := fmt.Sprint(v)
	if strings.ContainsAny(s, " \t\"") {
		return strconv.Quote(s)
	}
	return s
}
