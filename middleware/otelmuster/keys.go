package otelmuster

import "github.com/musterhq/muster/telemetry/musterconv"

// The attribute keys spans share with the metric catalogue.
const (
	batcherNameKey  = musterconv.BatcherNameKey
	batchTriggerKey = musterconv.BatchTriggerKey
	errorTypeKey    = musterconv.ErrorTypeKey
)
