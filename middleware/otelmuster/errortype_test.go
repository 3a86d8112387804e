package otelmuster_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

type codeError struct{ code int }

func (e codeError) Error() string { return fmt.Sprint("code ", e.code) }

type emptyTypeError struct{}

func (emptyTypeError) Error() string     { return "empty" }
func (emptyTypeError) ErrorType() string { return "" }

func TestErrorType(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&muster.PanicError{Value: quotaError{}}, "panic"}, // the panic wins over the value's type
		{fmt.Errorf("fire: %w", &muster.PanicError{Value: 1}), "panic"},
		{&muster.ShutdownError{Cause: context.DeadlineExceeded}, "shutdown_incomplete"},
		{muster.ErrIncomplete, "shutdown_incomplete"},
		{quotaError{}, "quota"},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", quotaError{})), "quota"},
		{errors.Join(errors.New("x"), quotaError{}), "quota"},
		{fmt.Errorf("%w", muster.ErrStopped), "stopped"},
		{muster.ErrNotStarted, "not_started"},
		{fmt.Errorf("item 7: %w", journal.ErrExpired), "expired"},
		{journal.ErrFull, "journal_full"},
		{journal.ErrClosed, "journal_closed"},
		{muster.ErrFull, "full"},
		{fmt.Errorf("x: %w", muster.ErrDropped), "dropped"},
		{muster.ErrTooLarge, "too_large"},
		{muster.ErrTooManyKeys, "too_many_keys"},
		{fmt.Errorf("key: %w", muster.ErrInvalidKey), "invalid_key"},
		{&muster.ItemErrors{Errs: []error{nil, quotaError{}}}, "partial"},
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("wait: %w", context.Canceled), "canceled"},
		{codeError{7}, "github.com/musterhq/muster/middleware/otelmuster_test.codeError"},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", codeError{7})), "github.com/musterhq/muster/middleware/otelmuster_test.codeError"},
		{fmt.Errorf("%w and %w", &fs.PathError{Op: "open", Err: fs.ErrNotExist}, codeError{1}), "*fs.PathError"},
		{fmt.Errorf("no cause: %w", nil), "*fmt.wrapError"},
		{errors.New("plain"), "*errors.errorString"},
		{errors.Join(errors.New("a"), errors.New("b")), "*errors.joinError"},
		{emptyTypeError{}, "github.com/musterhq/muster/middleware/otelmuster_test.emptyTypeError"},
	} {
		if got := otelmuster.ErrorType(tc.err); got != tc.want {
			t.Errorf("ErrorType(%#v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// The options ignore nil providers and an unspecified span kind.
func TestOptionsNil(t *testing.T) {
	o := otelmuster.NewTracing(otelmuster.WithTracerProvider(nil), otelmuster.WithSpanKind(0), nil)
	if o == nil {
		t.Fatal("no observer")
	}
	if h := o.Observe(muster.ClientInfo{Name: "x"}); h == nil || h.Fired == nil {
		t.Fatal("no hooks")
	}
	if _, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := otelmuster.NewHooks(); err != nil {
		t.Fatal(err)
	}
	if otelmuster.Version() == "" {
		t.Error("empty version")
	}
}
