package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/meshward/meshward/intel"
)

// Limits on list queries.
const (
	defaultLimit = 100
	maxLimit     = 10000
	// iocScan is how many of the most recent sightings the indicator
	// list and the detections list are computed from.
	iocScan    = 10000
	maxNameLen = 64
)

// Why a request was refused before its handler could act: the reason
// label of meshward_admin_requests_rejected_total.
const (
	reasonBodyTooLarge   = "body_too_large"  // over the route's body limit (413)
	reasonBadLimit       = "bad_limit"       // limit outside its bounds (400)
	reasonBadCursor      = "bad_cursor"      // a cursor no page handed out (400)
	reasonProfileSeconds = "profile_seconds" // a profile's seconds outside 1..maxProfileSeconds (400)
	reasonUnknownProfile = "unknown_profile" // no such profile (404)
)

var rejectReasons = [...]string{reasonBodyTooLarge, reasonBadLimit, reasonBadCursor, reasonProfileSeconds, reasonUnknownProfile}

// rejection is an error the server counts under a reason when it answers
// with it.
type rejection struct {
	reason string
	err    error
}

func (r *rejection) Error() string { return r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

// rejected marks err to be counted under reason.
func rejected(reason string, err error) error { return &rejection{reason: reason, err: err} }

// tooLarge is the error of a body over limit bytes.
func tooLarge(limit int64) error {
	return rejected(reasonBodyTooLarge, fmt.Errorf("%w: request body over %d bytes", ErrTooLarge, limit))
}

// decode reads a JSON request body strictly.
func decode(c *call, v any) error {
	dec := json.NewDecoder(c.r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(mbe.Limit)
		}
		return fmt.Errorf("%w: decode body: %v", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON body", ErrInvalid)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing data after the JSON body", ErrInvalid)
	}
	return nil
}

// decodeOptional is decode for a body that may be empty.
func decodeOptional(c *call, v any) error {
	b, err := io.ReadAll(c.r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(mbe.Limit)
		}
		return fmt.Errorf("%w: read body: %v", ErrInvalid, err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	c.r.Body = io.NopCloser(bytes.NewReader(b))
	return decode(c, v)
}

// parseIndicator reads an indicator as an operator writes it.
func parseIndicator(value, typ string) (intel.Indicator, error) {
	var ind intel.Indicator
	var err error
	if typ != "" {
		ind, err = intel.NewIndicator(intel.IndicatorType(strings.ToLower(typ)), strings.TrimSpace(value))
	} else {
		ind, err = intel.ParseIndicator(value)
	}
	if err != nil {
		return intel.Indicator{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return ind, nil
}

// limit reads the limit query parameter of most lists.
func limit(c *call) (int, error) { return limitParam(c, defaultLimit, maxLimit) }

// limitParam reads the limit query parameter: def when absent, else 1 to
// most.
func limitParam(c *call, def, most int) (int, error) {
	v := c.r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, rejected(reasonBadLimit, fmt.Errorf("%w: limit %q: want 1 to %d", ErrInvalid, v, most))
	}
	return n, nil
}

// boolParam reads an optional true-or-false query parameter; nil when
// absent.
func boolParam(c *call, name string) (*bool, error) {
	v := c.r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q: want true or false", ErrInvalid, name, v)
	}
	return &b, nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
