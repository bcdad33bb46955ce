// Package confcheck is the one way Meshward's configuration sections report
// what is wrong: every problem is a FieldError naming the field by its YAML
// path and the value found, a section's Validate returns them all joined,
// and the section that embeds another prefixes the inner paths with Under.
// It also names the fields of YAML decoding errors, which name only a line.
package confcheck

import (
	"errors"
	"fmt"
)

// FieldError names the configuration field that is wrong.
type FieldError struct {
	// Field is the YAML path of the field ("gossip.rate_limit",
	// "responders.exec[0].add").
	Field string
	Value any
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s (got %v)", e.Field, e.Msg, e.Value)
}

// Problems collects the FieldErrors of one section.
type Problems struct {
	errs []error
}

// Add records that field (a path relative to the section) holds the bad
// value v, and why.
func (p *Problems) Add(field string, v any, msg string) {
	p.errs = append(p.errs, &FieldError{Field: field, Value: v, Msg: msg})
}

// Join records the errors of a nested section under prefix (see Under).
func (p *Problems) Join(prefix string, err error) {
	if err != nil {
		p.errs = append(p.errs, Under(prefix, err))
	}
}

// Err returns every problem recorded, joined, or nil.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Under returns err with the Field of every FieldError in it (through
// errors.Join trees) prefixed by prefix and a dot. Other errors are kept
// and prefixed in their text. Nil stays nil.
func Under(prefix string, err error) error {
	if err == nil || prefix == "" {
		return err
	}
	var fe *FieldError
	if errors.As(err, &fe) && err == error(fe) {
		c := *fe
		c.Field = join(prefix, fe.Field)
		return &c
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Under(prefix, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

func join(prefix, field string) string {
	if field == "" {
		return prefix
	}
	if field[0] == '[' {
		return prefix + field
	}
	return prefix + "." + field
}

// Fields returns every FieldError inside err (through errors.Join trees and
// wrapping), in order.
func Fields(err error) []*FieldError {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*FieldError
		for _, e := range j.Unwrap() {
			out = append(out, Fields(e)...)
		}
		return out
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return []*FieldError{fe}
	}
	return nil
}
