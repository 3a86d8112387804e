package otelmuster

import "github.com/musterhq/muster/muster"

// NewHooks returns tracing and metrics together:
// muster.Compose(NewTracing(opts...), metrics), with the metrics from
// [NewMetrics]. Tracing comes first, so measurements made in Fired and Done
// see the batch span in their context (exemplars) and the span ends after
// them. Its error is NewMetrics's.
func NewHooks(opts ...Option) (muster.Observer, error) {
	m, err := NewMetrics(opts...)
	if err != nil {
		return nil, err
	}
	return muster.Compose(NewTracing(opts...), m), nil
}
