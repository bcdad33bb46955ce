package stix

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
)

// ErrMalformed is wrapped by every error about the input itself (as
// opposed to an error of the callback or of the reader underneath).
var ErrMalformed = errors.New("malformed stix")

// Default bounds of a Reader.
const (
	DefaultMaxBytes   = 256 << 20
	DefaultMaxObjects = 1_000_000
)

// Entry is one indicator read from a STIX object: an `indicator` whose
// pattern names it, or a cyber-observable (ipv4-addr, ipv6-addr,
// domain-name, url, file with hashes). An indicator whose pattern names
// several observables yields one Entry for each.
type Entry struct {
	Indicator intel.Indicator
	// ObjectID and ObjectType are those of the STIX object it came from;
	// Index is the object's position in the objects array (0-based).
	ObjectID   string
	ObjectType string
	Index      int
	Name       string
	// Description is at most intel.MaxReportDescription bytes: a longer
	// one is an error.
	Description string
	// Confidence is 0..100; HasConfidence is false when the object gives
	// none.
	Confidence    int
	HasConfidence bool
	Labels        []string
	// Technique is the MITRE ATT&CK technique ID (T1110 or T1110.001)
	// from a mitre-attack external reference or kill chain phase.
	Technique string
	// ValidFrom and ValidUntil come from an indicator (zero for an
	// observable, and ValidUntil for an indicator without one).
	ValidFrom, ValidUntil time.Time
	Created, Modified     time.Time
	// TLP is the Traffic Light Protocol level of the object's markings
	// ("clear", "green", "amber", "amber+strict", "red"; TLP 1.0's white
	// reads as "clear"), or "" when it has none Meshward knows.
	TLP string
}

// Report turns the entry into an indicator report from source; the
// report is validated, and an entry without a time of its own gets
// validFrom. Confidence defaults to 50 when the object gives none.
func (e Entry) Report(source string, validFrom time.Time) (intel.IndicatorReport, error) {
	r := intel.IndicatorReport{
		Indicator: e.Indicator, Source: source, Confidence: 50, Labels: e.Labels,
		Technique: e.Technique, Description: e.Description, ValidFrom: e.ValidFrom, ValidUntil: e.ValidUntil,
	}
	if e.HasConfidence {
		r.Confidence = e.Confidence
	}
	if r.ValidFrom.IsZero() {
		r.ValidFrom = validFrom
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("object %d (%s): %w", e.Index, e.ObjectID, err)
	}
	return r, nil
}

// Stats counts what a read saw.
type Stats struct {
	Objects int // objects in the objects array
	Entries int // entries yielded
	// Skipped counts the objects that yielded nothing, by type
	// ("malware", "relationship"..., and "indicator/pattern_type=sigma"
	// for indicators in another pattern language).
	Skipped map[string]int
}

func (s *Stats) skip(kind string) {
	if s.Skipped == nil {
		s.Skipped = make(map[string]int)
	}
	s.Skipped[kind]++
}

// SkippedTypes lists the skipped kinds in order, for messages.
func (s Stats) SkippedTypes() []string {
	out := make([]string, 0, len(s.Skipped))
	for k := range s.Skipped {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ObjectError is a malformed object: its index in the objects array, its
// id when it had one, and the field at fault.
type ObjectError struct {
	Index int
	ID    string
	Field string
	Err   error
}

func (e *ObjectError) Error() string {
	id := e.ID
	if id == "" {
		id = "no id"
	}
	if e.Field == "" {
		return fmt.Sprintf("stix: object %d (%s): %v", e.Index, id, e.Err)
	}
	return fmt.Sprintf("stix: object %d (%s): %s: %v", e.Index, id, e.Field, e.Err)
}

func (e *ObjectError) Unwrap() []error { return []error{ErrMalformed, e.Err} }

// Reader reads STIX bundles and TAXII envelopes as a stream of JSON
// tokens: only one object of the objects array is held at a time. The
// zero Reader uses the default bounds.
type Reader struct {
	// MaxBytes bounds the input; 0 means DefaultMaxBytes.
	MaxBytes int64
	// MaxObjects bounds the objects array; 0 means DefaultMaxObjects.
	MaxObjects int
}

// ReadBundle is Reader{}.ReadBundle.
func ReadBundle(r io.Reader, fn func(Entry) error) (Stats, error) {
	return Reader{}.ReadBundle(r, fn)
}

// ReadBundle reads a STIX 2.1 bundle and calls fn with each entry, in
// order. It stops at the first error: a malformed object (an
// *ObjectError wrapping ErrMalformed that names the object and the
// field), a malformed bundle, or fn's error. Entries yielded before an
// error are not to be trusted as a whole: a caller that wants all or
// nothing collects them (ReadAll) and applies them only when ReadBundle
// returned nil.
func (rd Reader) ReadBundle(r io.Reader, fn func(Entry) error) (Stats, error) {
	var typ string
	st, err := rd.read(r, map[string]any{"type": &typ}, fn)
	if err != nil {
		return st, err
	}
	if typ != "bundle" {
		return st, fmt.Errorf("%w: top-level type is %q, want \"bundle\"", ErrMalformed, typ)
	}
	return st, nil
}

// Envelope is a TAXII 2.1 envelope's paging fields.
type Envelope struct {
	More bool   `json:"more"`
	Next string `json:"next"`
}

// ReadEnvelope reads a TAXII 2.1 envelope (more, next, objects) as
// ReadBundle reads a bundle.
func (rd Reader) ReadEnvelope(r io.Reader, fn func(Entry) error) (Envelope, Stats, error) {
	var env Envelope
	st, err := rd.read(r, map[string]any{"more": &env.More, "next": &env.Next}, fn)
	return env, st, err
}

// ReadAll reads a whole bundle and returns its entries only when all of it
// is well formed; at most maxEntries of them (0: no bound besides the
// Reader's).
func (rd Reader) ReadAll(r io.Reader, maxEntries int) ([]Entry, Stats, error) {
	var out []Entry
	st, err := rd.ReadBundle(r, func(e Entry) error {
		if maxEntries > 0 && len(out) >= maxEntries {
			return fmt.Errorf("%w: more than %d indicators", ErrMalformed, maxEntries)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, st, err
	}
	return out, st, nil
}

// countingReader fails once more than max bytes were read.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
}

var errTooBig = errors.New("input too large")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.max {
		// The caller has seen exactly max bytes: one more is too many.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: over %d bytes", errTooBig, c.max)
		}
		return 0, err
	}
	if rem := c.max - c.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// read walks the top-level object: "objects" is streamed, the keys of
// fields are decoded into their values, every other key is skipped.
func (rd Reader) read(r io.Reader, fields map[string]any, fn func(Entry) error) (Stats, error) {
	var st Stats
	maxBytes, maxObjects := rd.MaxBytes, rd.MaxObjects
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if maxObjects <= 0 {
		maxObjects = DefaultMaxObjects
	}
	cr := &countingReader{r: r, max: maxBytes}
	dec := json.NewDecoder(cr)
	dec.UseNumber()
	fail := func(err error) (Stats, error) {
		if errors.Is(err, errTooBig) {
			return st, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return st, fmt.Errorf("%w: broken JSON at byte %d: %w", ErrMalformed, dec.InputOffset(), err)
		}
		return st, err
	}
	tok, err := dec.Token()
	if err != nil {
		return fail(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return st, fmt.Errorf("%w: the input is not a JSON object", ErrMalformed)
	}
	seenObjects := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		key, _ := tok.(string)
		switch {
		case key == "objects":
			if seenObjects {
				return st, fmt.Errorf("%w: objects given twice", ErrMalformed)
			}
			seenObjects = true
			if err := rd.objects(dec, maxObjects, &st, fn); err != nil {
				return fail(err)
			}
		case fields[key] != nil:
			if err := dec.Decode(fields[key]); err != nil {
				var ute *json.UnmarshalTypeError
				if errors.As(err, &ute) {
					return st, fmt.Errorf("%w: top-level %s: want a %s, got %s", ErrMalformed, key, ute.Type, ute.Value)
				}
				return fail(err)
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fail(err)
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fail(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return st, fmt.Errorf("%w: data after the top-level object at byte %d", ErrMalformed, dec.InputOffset())
	}
	return st, nil
}

// objects streams the objects array.
func (rd Reader) objects(dec *json.Decoder, maxObjects int, st *Stats, fn func(Entry) error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil { // "objects": null
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("%w: objects is not an array", ErrMalformed)
	}
	for i := 0; dec.More(); i++ {
		if i >= maxObjects {
			return fmt.Errorf("%w: more than %d objects", ErrMalformed, maxObjects)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		st.Objects++
		if err := entries(i, raw, st, fn); err != nil {
			return err
		}
	}
	_, err = dec.Token() // ']'
	return err
}

// object is the fields Meshward reads from any STIX object.
type object struct {
	Type               string              `json:"type"`
	ID                 string              `json:"id"`
	SpecVersion        string              `json:"spec_version"`
	Created            *string             `json:"created"`
	Modified           *string             `json:"modified"`
	Name               string              `json:"name"`
	Description        string              `json:"description"`
	Pattern            *string             `json:"pattern"`
	PatternType        string              `json:"pattern_type"`
	ValidFrom          *string             `json:"valid_from"`
	ValidUntil         *string             `json:"valid_until"`
	Confidence         *int                `json:"confidence"`
	Labels             []string            `json:"labels"`
	KillChainPhases    []killChainPhase    `json:"kill_chain_phases"`
	ExternalReferences []externalReference `json:"external_references"`
	ObjectMarkingRefs  []string            `json:"object_marking_refs"`
	Value              *string             `json:"value"`
	Hashes             map[string]string   `json:"hashes"`
	Revoked            bool                `json:"revoked"`
}

type killChainPhase struct {
	KillChainName string `json:"kill_chain_name"`
	PhaseName     string `json:"phase_name"`
}

type externalReference struct {
	SourceName  string `json:"source_name"`
	ExternalID  string `json:"external_id,omitempty"`
	URL         string `json:"url,omitempty"`
	Description string `json:"description,omitempty"`
}

var (
	techniqueRE = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)
	idRE        = regexp.MustCompile(`^[a-z][a-z0-9-]+[a-z0-9]--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$`)
)

// Bounds of the fields an entry carries.
const (
	maxName = 1024
)

// entries decodes object i and yields its entries.
func entries(i int, raw json.RawMessage, st *Stats, fn func(Entry) error) error {
	bad := func(id, field string, err error) error { return &ObjectError{Index: i, ID: id, Field: field, Err: err} }
	var head struct {
		Type any `json:"type"`
		ID   any `json:"id"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return bad("", "", fmt.Errorf("not a JSON object: %w", err))
	}
	id, _ := head.ID.(string)
	typ, ok := head.Type.(string)
	if !ok || typ == "" {
		return bad(id, "type", errors.New("missing or not a string"))
	}
	if !idRE.MatchString(id) || !strings.HasPrefix(id, typ+"--") {
		return bad(id, "id", fmt.Errorf("want %s--<uuid>", typ))
	}
	switch typ {
	case "indicator", "ipv4-addr", "ipv6-addr", "domain-name", "url", "file":
	default:
		st.skip(typ)
		return nil
	}
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return bad(id, ute.Field, fmt.Errorf("want a %s, got %s", ute.Type, ute.Value))
		}
		return bad(id, "", err)
	}
	e := Entry{ObjectID: id, ObjectType: typ, Index: i, Name: o.Name, Description: o.Description, Labels: o.Labels}
	var err error
	if e.Created, err = stamp(o.Created); err != nil {
		return bad(id, "created", err)
	}
	if e.Modified, err = stamp(o.Modified); err != nil {
		return bad(id, "modified", err)
	}
	if len(o.Name) > maxName {
		return bad(id, "name", fmt.Errorf("%d bytes, limit %d", len(o.Name), maxName))
	}
	if len(o.Description) > intel.MaxReportDescription {
		return bad(id, "description", fmt.Errorf("%d bytes, limit %d", len(o.Description), intel.MaxReportDescription))
	}
	if len(o.Labels) > intel.MaxReportLabels {
		return bad(id, "labels", fmt.Errorf("%d labels, limit %d", len(o.Labels), intel.MaxReportLabels))
	}
	for j, l := range o.Labels {
		if l == "" || len(l) > intel.MaxReportLabel {
			return bad(id, fmt.Sprintf("labels[%d]", j), fmt.Errorf("must be 1 to %d bytes, got %d", intel.MaxReportLabel, len(l)))
		}
	}
	if o.Confidence != nil {
		if *o.Confidence < 0 || *o.Confidence > 100 {
			return bad(id, "confidence", fmt.Errorf("%d out of range 0..100", *o.Confidence))
		}
		e.Confidence, e.HasConfidence = *o.Confidence, true
	}
	e.Technique = technique(o)
	e.TLP = tlpOf(o.ObjectMarkingRefs)

	var inds []intel.Indicator
	switch typ {
	case "indicator":
		if o.PatternType != "stix" {
			st.skip("indicator/pattern_type=" + o.PatternType)
			return nil
		}
		if o.Pattern == nil {
			return bad(id, "pattern", errors.New("missing"))
		}
		if e.ValidFrom, err = stamp(o.ValidFrom); err != nil {
			return bad(id, "valid_from", err)
		}
		if e.ValidFrom.IsZero() {
			return bad(id, "valid_from", errors.New("missing"))
		}
		if e.ValidUntil, err = stamp(o.ValidUntil); err != nil {
			return bad(id, "valid_until", err)
		}
		if !e.ValidUntil.IsZero() && !e.ValidUntil.After(e.ValidFrom) {
			return bad(id, "valid_until", fmt.Errorf("%s is not after valid_from %s",
				e.ValidUntil.Format(time.RFC3339Nano), e.ValidFrom.Format(time.RFC3339Nano)))
		}
		if inds, err = ParsePattern(*o.Pattern); err != nil {
			return bad(id, "pattern", err)
		}
	case "file":
		algs := make([]string, 0, len(o.Hashes))
		for alg := range o.Hashes {
			algs = append(algs, alg)
		}
		sort.Strings(algs)
		for _, alg := range algs {
			t, ok := HashType(alg)
			if !ok {
				continue
			}
			ind, err := intel.NewIndicator(t, o.Hashes[alg])
			if err != nil {
				return bad(id, "hashes."+alg, err)
			}
			inds = append(inds, ind)
		}
		if len(inds) == 0 {
			st.skip("file/no-known-hash")
			return nil
		}
	default:
		if o.Value == nil {
			return bad(id, "value", errors.New("missing"))
		}
		ind, err := observable(typ, *o.Value)
		if err != nil {
			return bad(id, "value", err)
		}
		inds = []intel.Indicator{ind}
	}
	for _, ind := range inds {
		e.Indicator = ind
		st.Entries++
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// observable is the indicator of a cyber-observable's value.
func observable(typ, v string) (intel.Indicator, error) {
	var t intel.IndicatorType
	switch typ {
	case "ipv4-addr":
		t = intel.IPv4
	case "ipv6-addr":
		t = intel.IPv6
	case "domain-name":
		return intel.NewIndicator(intel.Domain, v)
	case "url":
		return intel.NewIndicator(intel.URL, v)
	}
	if !strings.Contains(v, "/") {
		return intel.NewIndicator(t, v)
	}
	ind, err := intel.NewIndicator(intel.CIDR, v)
	if err != nil {
		return ind, err
	}
	pfx, _ := ind.Prefix()
	if pfx.Addr().Is4() != (t == intel.IPv4) {
		return ind, fmt.Errorf("%q is not an %s network", v, typ)
	}
	if pfx.IsSingleIP() {
		return intel.IndicatorFromAddr(pfx.Addr()), nil
	}
	return ind, nil
}

// stamp parses a STIX timestamp (RFC 3339 in UTC, with a Z); nil is the
// zero time.
func stamp(s *string) (time.Time, error) {
	if s == nil {
		return time.Time{}, nil
	}
	if !strings.HasSuffix(*s, "Z") {
		return time.Time{}, fmt.Errorf("timestamp %q is not in UTC (want ...Z)", *s)
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: want RFC 3339 such as 2024-01-02T03:04:05.000Z", *s)
	}
	return t, nil
}

// technique is the ATT&CK technique an object names.
func technique(o object) string {
	for _, r := range o.ExternalReferences {
		if r.SourceName == "mitre-attack" && techniqueRE.MatchString(r.ExternalID) {
			return r.ExternalID
		}
	}
	for _, k := range o.KillChainPhases {
		if k.KillChainName == "mitre-attack" && techniqueRE.MatchString(k.PhaseName) {
			return k.PhaseName
		}
	}
	return ""
}
