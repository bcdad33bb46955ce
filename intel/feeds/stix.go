package feeds

import (
	"errors"
	"fmt"
	"io"

	"github.com/meshward/meshward/intel/stix"
)

// ParseSTIX reads a STIX 2.1 bundle (intel/stix): indicators whose
// pattern names observables, and the observables themselves. Objects that
// yield nothing are counted as skips by type ("type:malware"); a malformed
// object is an error naming its index and ID.
func ParseSTIX(r io.Reader, o Options, fn func(Entry) error) (Stats, error) {
	var st Stats
	em := &emitter{o: o, stats: &st, fn: fn}
	sst, err := stix.ReadBundle(r, func(se stix.Entry) error { return em.emit(entryOfSTIX(se)) })
	for k, n := range sst.Skipped {
		if st.Skipped == nil {
			st.Skipped = make(map[string]int)
		}
		st.Skipped["type:"+safeType(k)] += n
	}
	if err != nil {
		var oe *stix.ObjectError
		pos := Position{File: o.File}
		if errors.As(err, &oe) {
			return st, &Error{Pos: pos, Reason: "format", Err: fmt.Errorf("%w: %w", ErrFormat, err)}
		}
		if errors.Is(err, stix.ErrMalformed) {
			return st, &Error{Pos: pos, Reason: "format", Err: fmt.Errorf("%w: %w", ErrFormat, err)}
		}
		return st, err // the callback's own error
	}
	return st, nil
}
