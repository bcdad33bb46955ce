package feeds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
)

// Limits of a MISP feed.
const (
	// MaxMISPManifest bounds manifest.json.
	MaxMISPManifest = 64 << 20
	// MaxMISPEvent bounds one event file: an event is decoded whole, so
	// this bounds the memory a poll of a MISP feed takes (a few times it).
	MaxMISPEvent = 64 << 20
	// MaxMISPEvents bounds the events a manifest may list.
	MaxMISPEvents = 1 << 20
)

// Opener opens a file of a feed directory by its name ("manifest.json",
// "<uuid>.json").
type Opener func(name string) (io.ReadCloser, error)

// DirOpener opens files of a directory tree.
func DirOpener(fsys fs.FS) Opener {
	return func(name string) (io.ReadCloser, error) { return fsys.Open(name) }
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidUUID reports whether s is a UUID in its usual text form: the only
// names of event files a manifest may point to.
func ValidUUID(s string) bool { return uuidRE.MatchString(s) }

// mispTag is a tag of an event or attribute.
type mispTag struct {
	Name string `json:"name"`
}

// flexInt reads a number that MISP writes as a number or a string.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want a number, got %s", b)
	}
	*f = flexInt(n)
	return nil
}

// flexBool reads a boolean that MISP writes as true/false, 0/1 or "0"/"1".
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	switch strings.Trim(string(b), `"`) {
	case "true", "1":
		*f = true
	case "false", "0", "", "null":
		*f = false
	default:
		return fmt.Errorf("want a boolean, got %s", b)
	}
	return nil
}

// MISPAttribute is an attribute of a MISP event, as MISP writes it.
type MISPAttribute struct {
	UUID      string    `json:"uuid,omitempty"`
	Type      string    `json:"type"`
	Category  string    `json:"category,omitempty"`
	Value     string    `json:"value"`
	ToIDs     flexBool  `json:"to_ids"`
	Deleted   flexBool  `json:"deleted,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	Timestamp flexInt   `json:"timestamp,omitempty"`
	FirstSeen string    `json:"first_seen,omitempty"`
	LastSeen  string    `json:"last_seen,omitempty"`
	Tag       []mispTag `json:"Tag,omitempty"`
}

// MISPObject is an object of a MISP event: a group of attributes.
type MISPObject struct {
	UUID      string          `json:"uuid,omitempty"`
	Name      string          `json:"name,omitempty"`
	Attribute []MISPAttribute `json:"Attribute"`
}

// MISPEvent is a MISP event, the "Event" of an event file.
type MISPEvent struct {
	UUID          string          `json:"uuid"`
	Info          string          `json:"info"`
	Date          string          `json:"date"`
	ThreatLevelID flexInt         `json:"threat_level_id"`
	Analysis      flexInt         `json:"analysis"`
	Timestamp     flexInt         `json:"timestamp"`
	Published     flexBool        `json:"published"`
	Orgc          *mispOrg        `json:"Orgc,omitempty"`
	Tag           []mispTag       `json:"Tag,omitempty"`
	Attribute     []MISPAttribute `json:"Attribute"`
	Object        []MISPObject    `json:"Object,omitempty"`
}

type mispOrg struct {
	Name string `json:"name"`
	UUID string `json:"uuid,omitempty"`
}

// mispManifestEntry is one event of manifest.json.
type mispManifestEntry struct {
	Info          string    `json:"info"`
	Date          string    `json:"date"`
	ThreatLevelID flexInt   `json:"threat_level_id"`
	Analysis      flexInt   `json:"analysis"`
	Timestamp     flexInt   `json:"timestamp"`
	Orgc          *mispOrg  `json:"Orgc,omitempty"`
	Tag           []mispTag `json:"Tag,omitempty"`
}

// mispIndicatorTypes maps the MISP attribute types read (the value's
// part, for composites) to how the value is read: "" guesses between an
// address and a CIDR.
var mispTypes = map[string]intel.IndicatorType{
	"ip-src": "", "ip-dst": "", "domain": intel.Domain, "hostname": intel.Domain, "url": intel.URL,
	"md5": intel.MD5, "sha1": intel.SHA1, "sha256": intel.SHA256,
}

// mispComposites are the composite types read: which parts ("a|b") hold
// values, and their types.
var mispComposites = map[string][]string{
	"ip-dst|port":     {"ip-dst", ""},
	"ip-src|port":     {"ip-src", ""},
	"domain|ip":       {"domain", "ip-dst"},
	"hostname|port":   {"hostname", ""},
	"filename|md5":    {"", "md5"},
	"filename|sha1":   {"", "sha1"},
	"filename|sha256": {"", "sha256"},
}

// threatConfidence maps MISP's threat level (1 high, 2 medium, 3 low,
// 4 undefined) to a confidence; 0 leaves the feed's default.
var threatConfidence = map[flexInt]int{1: 90, 2: 70, 3: 50}

// ParseMISP reads a MISP feed: manifest.json, then each event file it
// lists, in UUID order, one event in memory at a time. Only attributes
// with to_ids true of the types read (ip-src, ip-dst, domain, hostname,
// url, md5, sha1, sha256 and the composites ip-dst|port, ip-src|port,
// domain|ip, hostname|port, filename|md5, filename|sha1, filename|sha256)
// become entries; the others are skipped and counted by type
// ("type:email-src"). The TLP comes from the tags (tlp:amber), the
// attribute's over the event's; other tags become labels; an ATT&CK
// technique ID in a tag becomes the technique; vulnerability attributes
// give the CVE references of every entry of their event.
func ParseMISP(open Opener, o Options, fn func(Entry) error) (Stats, error) {
	var st Stats
	mo := o
	mo.File = joinName(o.File, "manifest.json")
	rc, err := open("manifest.json")
	if err != nil {
		return st, &Error{Pos: Position{File: mo.File}, Reason: "format", Err: fmt.Errorf("open: %w", err)}
	}
	var manifest map[string]mispManifestEntry
	err = decodeLimited(rc, MaxMISPManifest, &manifest)
	rc.Close()
	if err != nil {
		return st, &Error{Pos: Position{File: mo.File}, Reason: "format", Err: err}
	}
	if len(manifest) > MaxMISPEvents {
		return st, &Error{Pos: Position{File: mo.File}, Reason: "format", Err: fmt.Errorf("%w: %d events, limit %d", ErrTooLarge, len(manifest), MaxMISPEvents)}
	}
	ids := make([]string, 0, len(manifest))
	for id := range manifest {
		if !ValidUUID(id) {
			return st, &Error{Pos: Position{File: mo.File}, Reason: "format", Err: fmt.Errorf("%w: event key %q is not a UUID", ErrFormat, truncate(id))}
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	em := &emitter{o: o, stats: &st, fn: fn}
	for _, id := range ids {
		name := id + ".json"
		eo := o
		eo.File = joinName(o.File, name)
		rc, err := open(name)
		if err != nil {
			return st, &Error{Pos: Position{File: eo.File, Event: id, Attr: -1}, Reason: "format", Err: fmt.Errorf("open: %w", err)}
		}
		em.o = eo
		err = parseEventFile(rc, id, em)
		rc.Close()
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// ParseMISPEvent reads one MISP event file ({"Event": {...}}).
func ParseMISPEvent(r io.Reader, o Options, fn func(Entry) error) (Stats, error) {
	var st Stats
	em := &emitter{o: o, stats: &st, fn: fn}
	return st, parseEventFile(io.NopCloser(r), "", em)
}

func parseEventFile(r io.Reader, want string, em *emitter) error {
	var doc struct {
		Event *MISPEvent `json:"Event"`
	}
	pos := Position{File: em.o.File, Event: want, Attr: -1}
	if err := decodeLimited(r, MaxMISPEvent, &doc); err != nil {
		return &Error{Pos: pos, Reason: "format", Err: err}
	}
	ev := doc.Event
	if ev == nil {
		return &Error{Pos: pos, Reason: "format", Err: fmt.Errorf(`%w: no "Event" object`, ErrFormat)}
	}
	if !ValidUUID(ev.UUID) {
		return &Error{Pos: pos, Reason: "format", Err: fmt.Errorf("%w: event uuid %q is not a UUID", ErrFormat, truncate(ev.UUID))}
	}
	if want != "" && !strings.EqualFold(ev.UUID, want) {
		return &Error{Pos: pos, Reason: "format", Err: fmt.Errorf("%w: the file of event %s holds event %s", ErrFormat, want, ev.UUID)}
	}
	pos.Event = ev.UUID
	base := Entry{Description: ev.Info, Confidence: threatConfidence[ev.ThreatLevelID]}
	if len(base.Description) > intel.MaxReportDescription {
		base.Description = base.Description[:intel.MaxReportDescription]
		for !utf8Valid(base.Description) {
			base.Description = base.Description[:len(base.Description)-1]
		}
	}
	if d, ok := parseTime(ev.Date); ok {
		base.FirstSeen = d
	}
	applyTags(&base, ev.Tag)
	// Every attribute, the event's first then each object's, indexed in
	// that order.
	attrs := make([]*MISPAttribute, 0, len(ev.Attribute))
	for i := range ev.Attribute {
		attrs = append(attrs, &ev.Attribute[i])
	}
	for i := range ev.Object {
		for j := range ev.Object[i].Attribute {
			attrs = append(attrs, &ev.Object[i].Attribute[j])
		}
	}
	for _, a := range attrs {
		if a.Type == "vulnerability" && cveRE.MatchString(strings.ToUpper(strings.TrimSpace(a.Value))) && len(base.CVEs) < 8 {
			base.CVEs = append(base.CVEs, strings.ToUpper(strings.TrimSpace(a.Value)))
		}
	}
	for i, a := range attrs {
		p := pos
		p.Attr = i
		if err := mispAttribute(em, p, base, a); err != nil {
			return err
		}
	}
	return nil
}

func mispAttribute(em *emitter, pos Position, base Entry, a *MISPAttribute) error {
	if a.Deleted {
		return em.bad(pos, SkipDeleted, errors.New("deleted attribute"))
	}
	parts := []string{a.Type}
	values := []string{a.Value}
	if comp, ok := mispComposites[a.Type]; ok {
		vs := strings.SplitN(a.Value, "|", 2)
		if len(vs) != 2 {
			return em.bad(pos, SkipInvalid, fmt.Errorf("%w: %s value %q has no '|'", ErrInvalidValue, a.Type, truncate(a.Value)))
		}
		parts, values = nil, nil
		for i, t := range comp {
			if t != "" {
				parts = append(parts, t)
				values = append(values, vs[i])
			}
		}
	} else if _, ok := mispTypes[a.Type]; !ok {
		return em.bad(pos, "type:"+safeType(a.Type), fmt.Errorf("attribute type %q not read", truncate(a.Type)))
	}
	if !a.ToIDs {
		return em.bad(pos, SkipNotIDS, errors.New("to_ids is false"))
	}
	e := base
	e.Labels = append([]string(nil), base.Labels...)
	applyTags(&e, a.Tag)
	if t, ok := parseTime(a.FirstSeen); ok {
		e.FirstSeen = t
	}
	if t, ok := parseTime(a.LastSeen); ok {
		e.LastSeen = t
	} else if a.Timestamp > 0 {
		e.LastSeen = time.Unix(int64(a.Timestamp), 0).UTC()
	}
	if a.Comment != "" && len(a.Comment) <= intel.MaxReportDescription && utf8Valid(a.Comment) {
		e.Description = a.Comment
	}
	for i, t := range parts {
		v := strings.TrimSpace(values[i])
		typ := mispTypes[t]
		var ind intel.Indicator
		var err error
		switch {
		case v == "":
			err = errors.New("empty value")
		case typ == "" && strings.Contains(v, "/"):
			ind, err = intel.NewIndicator(intel.CIDR, v)
		case typ == "":
			ind, err = intel.ParseIndicator(v)
			if err == nil && ind.Type != intel.IPv4 && ind.Type != intel.IPv6 {
				err = fmt.Errorf("%q is not an IP address", truncate(v))
			}
		default:
			ind, err = intel.NewIndicator(typ, v)
		}
		if err != nil {
			if berr := em.bad(pos, SkipInvalid, fmt.Errorf("%w: %s: %w", ErrInvalidValue, a.Type, err)); berr != nil {
				return berr
			}
			continue
		}
		e.Indicator = ind
		if err := em.emit(e); err != nil {
			return err
		}
	}
	return nil
}

// applyTags reads the TLP, labels and technique from tags.
func applyTags(e *Entry, tags []mispTag) {
	for _, t := range tags {
		name := strings.TrimSpace(t.Name)
		if strings.HasPrefix(strings.ToLower(name), "tlp:") {
			if tlp, err := ParseTLP(name); err == nil {
				e.TLP = tlp
			}
			continue
		}
		if m := techniqueRE.FindString(name); m != "" && strings.Contains(name, "attack-pattern") {
			e.Technique = m
		}
		if name != "" && len(name) <= intel.MaxReportLabel && utf8Valid(name) && !hasControl(name) && len(e.Labels) < intel.MaxReportLabels-2 && !containsStr(e.Labels, name) {
			e.Labels = append(e.Labels, name)
		}
	}
}

// decodeLimited decodes one JSON document of at most limit bytes.
func decodeLimited(r io.Reader, limit int64, v any) error {
	lr := &io.LimitedReader{R: r, N: limit + 1}
	dec := json.NewDecoder(lr)
	if err := dec.Decode(v); err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
		}
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if lr.N <= 0 {
		return fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the JSON document", ErrFormat)
	}
	return nil
}

func joinName(dir, name string) string {
	if dir == "" {
		return name
	}
	return strings.TrimSuffix(dir, "/") + "/" + name
}

func truncate(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// safeType keeps a MISP type usable as a metric label: short, and only
// the characters MISP's types use.
func safeType(t string) string {
	t = strings.ToLower(t)
	if len(t) > 32 {
		return "other"
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '|' || c == '_') {
			return "other"
		}
	}
	return t
}

func utf8Valid(s string) bool { return bytes.ContainsRune([]byte(s), 0xFFFD) == false && validUTF8(s) }
