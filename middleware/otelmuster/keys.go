package otelmuster

import (
	"unicode/utf8"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// The attribute keys spans share with the metric catalogue.
const (
	batcherNameKey  = musterconv.BatcherNameKey
	batchTriggerKey = musterconv.BatchTriggerKey
	errorTypeKey    = musterconv.ErrorTypeKey
	batchKeyKey     = musterconv.BatchKeyKey
)

// MaxKeyLength is the longest muster.batch.key value [NewMetrics] reports,
// in bytes: a longer key (in fmt's %v form) is cut to it, at a UTF-8
// character boundary, so that a label stays of a sane size. Keys that
// share their first MaxKeyLength bytes are reported as one.
const MaxKeyLength = 64

// keyLabel is the muster.batch.key value of a key on a metric: keyString,
// cut to MaxKeyLength bytes.
func keyLabel(k any) string {
	s := keyString(k)
	if len(s) <= MaxKeyLength {
		return s
	}
	n := MaxKeyLength
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
