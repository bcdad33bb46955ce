package feeds

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/meshward/meshward/intel/stix"
	"github.com/meshward/meshward/intel/taxii"
)

// FetchTAXII polls a TAXII 2.1 collection (intel/taxii) in full and spools
// its entries to a temporary file, at most MaxBytes of it, which
// ParseSpool reads (twice: check, then publish). token, when set, is sent
// as a bearer token, or as the Basic password of username when that is
// set.
func (f *Fetcher) FetchTAXII(ctx context.Context, collection, token, username string) (*Fetched, error) {
	opts := taxii.Options{HTTPClient: f.client(), Token: token, Timeout: f.timeout()}
	if username != "" {
		opts.Auth, opts.Username = taxii.AuthBasic, username
	}
	cl, err := taxii.New(opts)
	if err != nil {
		return nil, &FetchError{Source: collection, Result: ResultLocal, Err: err}
	}
	out, err := os.CreateTemp(f.TempDir, "meshward-taxii-*")
	if err != nil {
		return nil, &FetchError{Source: collection, Result: ResultLocal, Err: err}
	}
	fe := &Fetched{Path: out.Name(), temp: true}
	cw := &countWriter{w: bufio.NewWriter(out), limit: f.maxBytes()}
	enc := json.NewEncoder(cw)
	_, err = cl.Poll(ctx, collection, time.Time{}, func(se stix.Entry) error {
		return enc.Encode(entryOfSTIX(se))
	})
	if err == nil {
		err = cw.w.(*bufio.Writer).Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fe.Remove()
		return nil, &FetchError{Source: collection, Result: taxiiResult(ctx, err), Err: err}
	}
	fe.Size = cw.n
	return fe, nil
}

// taxiiResult classes a poll's error.
func taxiiResult(ctx context.Context, err error) string {
	var te *taxii.Error
	switch {
	case errors.Is(err, ErrTooLarge):
		return ResultTooLarge
	case errors.As(err, &te):
		if te.Status == http.StatusRequestEntityTooLarge {
			return ResultTooLarge
		}
		return ResultHTTPStatus
	case errors.Is(err, taxii.ErrProtocol), errors.Is(err, stix.ErrMalformed):
		return ResultParseError
	}
	return netResult(ctx, err)
}

// entryOfSTIX is the feed entry of a STIX entry.
func entryOfSTIX(se stix.Entry) Entry {
	e := Entry{
		Indicator: se.Indicator, Description: se.Description, Labels: se.Labels, Technique: se.Technique,
		ValidFrom: se.ValidFrom, ValidUntil: se.ValidUntil, FirstSeen: se.Created, LastSeen: se.Modified, TLP: se.TLP,
	}
	if se.HasConfidence && se.Confidence > 0 {
		e.Confidence = se.Confidence
	}
	return e
}

// ParseSpool reads the entries FetchTAXII spooled, one JSON object a line,
// each checked again as it is read.
func ParseSpool(r io.Reader, o Options, fn func(Entry) error) (Stats, error) {
	var st Stats
	em := &emitter{o: o, stats: &st, fn: fn}
	sc := newScanner(r)
	line := 0
	for sc.Scan() {
		line++
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return st, &Error{Pos: Position{File: o.File, Line: line}, Reason: "format", Err: fmt.Errorf("%w: %w", ErrFormat, err)}
		}
		if err := e.Indicator.Validate(); err != nil {
			if err := em.bad(Position{File: o.File, Line: line}, SkipInvalid, fmt.Errorf("%w: %w", ErrInvalidValue, err)); err != nil {
				return st, err
			}
			continue
		}
		if err := em.emit(e); err != nil {
			return st, err
		}
	}
	if err := sc.Err(); err != nil {
		return st, scanErr(o, line+1, err)
	}
	return st, nil
}

// countWriter fails once more than limit bytes were written.
type countWriter struct {
	w     io.Writer
	n     int64
	limit int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.n > c.limit {
		return 0, fmt.Errorf("%w: the collection's entries are over %d bytes", ErrTooLarge, c.limit)
	}
	return c.w.Write(p)
}
