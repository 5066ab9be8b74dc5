package rules

import (
	"errors"
	"strings"
)

// ErrTooExpensive is wrapped by the validation errors of a rule set whose
// patterns would take too long to evaluate on every hit.
var ErrTooExpensive = errors.New("rule set too expensive to evaluate")

// FieldError is one problem in a document: the path of the field, such as
// exclusions.ip[2] or goals[0].event.action, and a reason a person can act
// on.
type FieldError struct {
	Field  string
	Reason string
	// Err is ErrTooExpensive for a cost limit, nil otherwise.
	Err error
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap returns Err.
func (e FieldError) Unwrap() error { return e.Err }

// ValidationError lists every problem Compile found, in document order.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the field errors, so errors.Is(err, ErrTooExpensive)
// reports a cost limit anywhere in the document.
func (e *ValidationError) Unwrap() []error {
	out := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f
	}
	return out
}
