package muster_test

import (
	"testing"

	"go.uber.org/goleak"
)

// No test may leave a goroutine behind: the batches', the Work worker's and
// the timer's goroutines all end with Stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
