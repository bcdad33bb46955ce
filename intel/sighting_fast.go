package intel

import (
	"bytes"
	"time"
)

// decodeSightingFast decodes b into s, which must be zero, when b is a
// sighting in the form json.Marshal writes it: one object, no white
// space, each known key at most once and spelled as its tag, strings of
// printable ASCII without escapes, integers without fraction or exponent,
// times as RFC 3339 strings (decoded by time.Time's own UnmarshalJSON).
// On such input encoding/json gives the very same Sighting; for anything
// else (other spellings, escapes, white space, unknown or repeated keys,
// nulls, errors of any kind) it returns false, and the caller decodes b
// with encoding/json, which decides. It never accepts what encoding/json
// would refuse: FuzzDecodeSightingFast holds the two to the same result.
func decodeSightingFast(b []byte, s *Sighting) bool {
	p := fastJSON{b: b}
	if !p.next('{') {
		return false
	}
	var seen uint16
	for {
		key, ok := p.str()
		if !ok || !p.next(':') {
			return false
		}
		var bit uint16
		switch key {
		case "indicator":
			bit, ok = 1<<0, p.indicator(&s.Indicator)
		case "detector":
			bit = 1 << 1
			s.Detector, ok = p.str()
		case "technique":
			bit = 1 << 2
			s.Technique, ok = p.str()
		case "severity":
			bit = 1 << 3
			var v string
			v, ok = p.str()
			s.Severity = Severity(v)
		case "confidence":
			bit = 1 << 4
			s.Confidence, ok = p.int()
		case "count":
			bit = 1 << 5
			s.Count, ok = p.int()
		case "first_seen":
			bit, ok = 1<<6, p.time(&s.FirstSeen)
		case "last_seen":
			bit, ok = 1<<7, p.time(&s.LastSeen)
		case "site":
			bit = 1 << 8
			s.Site, ok = p.str()
		case "partial":
			bit = 1 << 9
			s.Partial, ok = p.bool()
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if p.next(',') {
			continue
		}
		return p.next('}') && p.i == len(p.b)
	}
}

// fastJSON reads the restricted JSON of decodeSightingFast.
type fastJSON struct {
	b []byte
	i int
}

func (p *fastJSON) next(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// quoted returns the bytes between a pair of quotes, all printable ASCII
// other than a quote or a backslash.
func (p *fastJSON) quoted() ([]byte, bool) {
	if !p.next('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *fastJSON) str() (string, bool) {
	q, ok := p.quoted()
	return string(q), ok
}

// int reads -?(0|[1-9][0-9]*) of at most 9 digits, which fits an int
// everywhere.
func (p *fastJSON) int() (int, bool) {
	neg := p.next('-')
	start := p.i
	v := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		v = v*10 + int(p.b[p.i]-'0')
		p.i++
	}
	n := p.i - start
	if n == 0 || n > 9 || (n > 1 && p.b[start] == '0') {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

func (p *fastJSON) bool() (bool, bool) {
	switch {
	case bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		return true, true
	case bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		return false, true
	}
	return false, false
}

func (p *fastJSON) time(t *time.Time) bool {
	start := p.i
	if _, ok := p.quoted(); !ok {
		return false
	}
	return t.UnmarshalJSON(p.b[start:p.i]) == nil
}

func (p *fastJSON) indicator(ind *Indicator) bool {
	if !p.next('{') {
		return false
	}
	var seen uint8
	for {
		key, ok := p.str()
		if !ok || !p.next(':') {
			return false
		}
		var v string
		if v, ok = p.str(); !ok {
			return false
		}
		switch {
		case key == "type" && seen&1 == 0:
			ind.Type, seen = IndicatorType(v), seen|1
		case key == "value" && seen&2 == 0:
			ind.Value, seen = v, seen|2
		default:
			return false
		}
		if p.next(',') {
			continue
		}
		return p.next('}')
	}
}
