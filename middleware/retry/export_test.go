package retry

// WithRand replaces the jitter's random source (uniform in [0, 1)) so that
// tests can seed it.
func WithRand(f func() float64) Option {
	return optionFunc(func(c *config) { c.rand = f })
}
