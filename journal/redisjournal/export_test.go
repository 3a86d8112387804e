package redisjournal

// Abandon stops the store as a SIGKILL would, for the tests: the queued
// Appends are sent, then the heartbeat and the claims' refreshes stop,
// with no goodbye (the heartbeat key expires after DeadAfter).
func (s *Store) Abandon() { s.shutdown() }

// Queued returns the number of Appends waiting for a group.
func (s *Store) Queued() int { return len(s.reqs) }
