package ratelimit

// QueueLen returns how many callers wait on l, for tests.
func QueueLen(l *Limiter) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// LimBurst returns the burst of l's underlying rate.Limiter, for tests: it
// must be back to Burst() once nobody waits.
func LimBurst(l *Limiter) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lim == nil {
		return l.burst
	}
	return l.lim.Burst()
}
