package otelmuster

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/muster"
)

// Values [ErrorType] gives muster's and the context package's errors.
const (
	// ErrorTypePanic: Fire (or a Batch's Add) panicked; a *muster.PanicError.
	ErrorTypePanic = "panic"
	// ErrorTypeShutdownIncomplete: a Shutdown deadline passed first; see
	// muster.ErrIncomplete. Items with this error.type were lost.
	ErrorTypeShutdownIncomplete = "shutdown_incomplete"
	// ErrorTypeStopped: Add was called after Stop; see muster.ErrStopped.
	ErrorTypeStopped = "stopped"
	// ErrorTypeNotStarted: the client was not started; see
	// muster.ErrNotStarted.
	ErrorTypeNotStarted = "not_started"
	// ErrorTypeTimeout: a context deadline passed
	// (context.DeadlineExceeded).
	ErrorTypeTimeout = "timeout"
	// ErrorTypeCanceled: a context was canceled (context.Canceled).
	ErrorTypeCanceled = "canceled"
	// ErrorTypeFull: Add found the pending capacity full (OverflowFail); see muster.ErrFull.
	ErrorTypeFull = "full"
	// ErrorTypeDropped: an item was dropped to make room; see muster.ErrDropped.
	ErrorTypeDropped = "dropped"
	// ErrorTypeTooLarge: an item was larger than MaxBatchBytes; see muster.ErrTooLarge.
	ErrorTypeTooLarge = "too_large"
	// ErrorTypeTooManyKeys: a Keyed refused an item of a new key; see muster.ErrTooManyKeys.
	ErrorTypeTooManyKeys = "too_many_keys"
	// ErrorTypeInvalidKey: a Keyed refused an item whose key is not equal
	// to itself (a NaN) or cannot be compared; see muster.ErrInvalidKey.
	ErrorTypeInvalidKey = "invalid_key"
	// ErrorTypeExpired: an item was older than the journal's MaxItemAge
	// when its batch fired, and was dead-lettered instead of delivered; see
	// journal.ErrExpired.
	ErrorTypeExpired = "expired"
	// ErrorTypeJournalFull: the journal was at its byte bound; see
	// journal.ErrFull.
	ErrorTypeJournalFull = "journal_full"
	// ErrorTypeJournalClosed: the journal's store was closed; see
	// journal.ErrClosed.
	ErrorTypeJournalClosed = "journal_closed"
	// ErrorTypePartial: some items of the batch failed (a *muster.ItemErrors);
	// item counts carry each item's own error.type.
	ErrorTypePartial = "partial"
)

// ErrorType returns the low-cardinality class of err used as the error.type
// attribute on spans and metrics, or "" for a nil err. The first rule that
// matches decides:
//
//  1. A *muster.ItemErrors (only some items failed): "partial".
//  2. a *muster.PanicError: "panic"; muster.ErrIncomplete:
//     "shutdown_incomplete". These say what happened to the batch, whatever
//     the panic value or the in-flight error was.
//  3. err, or an error in its chain, has a method ErrorType() string that
//     returns a non-empty value: that value (the convention of
//     go.opentelemetry.io/otel/semconv's ErrorType). Give your errors this
//     method to name them.
//  4. muster.ErrStopped: "stopped"; muster.ErrFull: "full"; muster.ErrDropped:
//     "dropped"; muster.ErrTooLarge: "too_large"; muster.ErrTooManyKeys:
//     "too_many_keys"; muster.ErrInvalidKey: "invalid_key";
//     muster.ErrNotStarted: "not_started"; journal.ErrExpired: "expired";
//     journal.ErrFull: "journal_full"; journal.ErrClosed: "journal_closed";
//     context.DeadlineExceeded: "timeout"; context.Canceled: "canceled".
//  5. Otherwise the Go type of err, after unwrapping fmt.Errorf wrappers, as
//     semconv's ErrorType names it: "package/path.Type" for a named type,
//     its type string otherwise (for example "*net.OpError" or
//     "*errors.errorString").
//
// The values are stable: dashboards and alerts may match on them.
func ErrorType(err error) string {
	switch {
	case err == nil:
		return ""
	case isItemErrors(err):
		return ErrorTypePartial
	case isPanic(err):
		return ErrorTypePanic
	case errors.Is(err, muster.ErrIncomplete):
		return ErrorTypeShutdownIncomplete
	}
	if s := methodErrorType(err); s != "" {
		return s
	}
	switch {
	case errors.Is(err, muster.ErrStopped):
		return ErrorTypeStopped
	case errors.Is(err, muster.ErrFull):
		return ErrorTypeFull
	case errors.Is(err, muster.ErrDropped):
		return ErrorTypeDropped
	case errors.Is(err, muster.ErrTooLarge):
		return ErrorTypeTooLarge
	case errors.Is(err, muster.ErrTooManyKeys):
		return ErrorTypeTooManyKeys
	case errors.Is(err, muster.ErrInvalidKey):
		return ErrorTypeInvalidKey
	case errors.Is(err, muster.ErrNotStarted):
		return ErrorTypeNotStarted
	case errors.Is(err, journal.ErrExpired):
		return ErrorTypeExpired
	case errors.Is(err, journal.ErrFull):
		return ErrorTypeJournalFull
	case errors.Is(err, journal.ErrClosed):
		return ErrorTypeJournalClosed
	case errors.Is(err, context.DeadlineExceeded):
		return ErrorTypeTimeout
	case errors.Is(err, context.Canceled):
		return ErrorTypeCanceled
	}
	t := reflect.TypeOf(unwrapFmt(err))
	if pkg, name := t.PkgPath(), t.Name(); pkg != "" && name != "" {
		return pkg + "." + name
	}
	return t.String()
}

type errorTyper interface{ ErrorType() string }

func methodErrorType(err error) string {
	if et, ok := err.(errorTyper); ok {
		if s := et.ErrorType(); s != "" {
			return s
		}
	}
	var et errorTyper
	if errors.As(err, &et) {
		return et.ErrorType()
	}
	return ""
}

var (
	fmtWrapError  = reflect.TypeOf(fmt.Errorf("%w", errors.New("x")))
	fmtWrapErrors = reflect.TypeOf(fmt.Errorf("%w %w", errors.New("x"), errors.New("y")))
)

// unwrapFmt strips the wrappers fmt.Errorf makes, which say nothing about
// the error: through %w to the wrapped error, through several %w to the
// first.
func unwrapFmt(err error) error {
	for {
		switch reflect.TypeOf(err) {
		case fmtWrapError:
			u := errors.Unwrap(err)
			if u == nil {
				return err
			}
			err = u
		case fmtWrapErrors:
			us := err.(interface{ Unwrap() []error }).Unwrap()
			if len(us) == 0 || us[0] == nil {
				return err
			}
			err = us[0]
		default:
			return err
		}
	}
}

func isItemErrors(err error) bool { return itemErrors(err) != nil }

func isPanic(err error) bool {
	_, ok := errors.AsType[*muster.PanicError](err)
	return ok
}
