package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/meshward/meshward/intel"
)

// encodeSightingRecord returns rec as json.Marshal writes it, byte for
// byte (the stored form of a record). It writes it itself when every
// string is plain (printable ASCII that encoding/json writes as it is:
// no quote, backslash, <, > or &) and every time encodes, which is what
// nodes send; otherwise it leaves the record to json.Marshal. Tests hold
// the two to the same bytes, and fail when SightingRecord, Sighting or
// Indicator gains, loses or renames a field.
func encodeSightingRecord(rec *SightingRecord) ([]byte, error) {
	if b, ok := appendSightingRecord(make([]byte, 0, 512), rec); ok {
		return b, nil
	}
	return json.Marshal(rec)
}

func appendSightingRecord(b []byte, rec *SightingRecord) ([]byte, bool) {
	s := &rec.Sighting
	ok := true
	str := func(b []byte, v string) []byte {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				ok = false
				return b
			}
		}
		b = append(b, '"')
		b = append(b, v...)
		return append(b, '"')
	}
	tm := func(b []byte, t time.Time) []byte {
		// What Time.MarshalJSON writes: its text (RFC 3339, refused
		// beyond year 9999) in quotes.
		j, err := t.AppendText(append(b, '"'))
		if err != nil {
			ok = false
			return b
		}
		return append(j, '"')
	}
	b = append(b, `{"Origin":`...)
	b = str(b, rec.Origin)
	b = append(b, `,"Seq":`...)
	b = strconv.AppendUint(b, rec.Seq, 10)
	b = append(b, `,"Sighting":{"indicator":{"type":`...)
	b = str(b, string(s.Indicator.Type))
	b = append(b, `,"value":`...)
	b = str(b, s.Indicator.Value)
	b = append(b, `},"detector":`...)
	b = str(b, s.Detector)
	if s.Technique != "" {
		b = append(b, `,"technique":`...)
		b = str(b, s.Technique)
	}
	if s.Severity != "" {
		b = append(b, `,"severity":`...)
		b = str(b, string(s.Severity))
	}
	b = append(b, `,"confidence":`...)
	b = strconv.AppendInt(b, int64(s.Confidence), 10)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(s.Count), 10)
	b = append(b, `,"first_seen":`...)
	b = tm(b, s.FirstSeen)
	b = append(b, `,"last_seen":`...)
	b = tm(b, s.LastSeen)
	if s.Site != "" {
		b = append(b, `,"site":`...)
		b = str(b, s.Site)
	}
	if s.Partial {
		b = append(b, `,"partial":true`...)
	}
	b = append(b, `},"Received":`...)
	b = tm(b, rec.Received)
	b = append(b, `,"Sent":`...)
	b = tm(b, rec.Sent)
	b = append(b, '}')
	return b, ok
}

// The stored form of a sighting record (the value of its sgi/ key) is
// compact when it can be: recordCompact, then the sighting's strings
// (indicator type and value, detector, technique, severity, site), each
// a uvarint length and its bytes, confidence and count as varints, a
// flags byte (flagPartial), and FirstSeen, LastSeen, Received and Sent as
// 8-byte big-endian Unix nanoseconds. Origin and sequence number are
// those at the end of the key. That is about 90 bytes where the JSON form
// is some 380, and decodes without reflection. A record whose compact
// form would not read back exactly as its JSON form does (a string that
// is not valid UTF-8, a time outside UTC or beyond int64 nanoseconds) is
// stored as JSON, as every record was before; a value that begins with
// '{' is JSON.
const (
	recordCompact byte = 1
	flagPartial   byte = 1 << 0
)

// encodeRecord returns the stored form of rec: compact when it reads back
// as its JSON form does, otherwise JSON (encodeSightingRecord).
func encodeRecord(rec *SightingRecord) ([]byte, error) {
	if b, ok := appendCompactRecord(make([]byte, 0, 128), rec); ok {
		return b, nil
	}
	return encodeSightingRecord(rec)
}

func appendCompactRecord(b []byte, rec *SightingRecord) ([]byte, bool) {
	s := &rec.Sighting
	strs := [...]string{string(s.Indicator.Type), s.Indicator.Value, s.Detector, s.Technique, string(s.Severity), s.Site}
	if !utf8.ValidString(rec.Origin) {
		return nil, false
	}
	for _, v := range strs {
		if !utf8.ValidString(v) {
			return nil, false
		}
	}
	times := [...]time.Time{s.FirstSeen, s.LastSeen, rec.Received, rec.Sent}
	for _, t := range times {
		// A UTC time its nanoseconds give back, monotonic reading aside.
		if t.Location() != time.UTC || !time.Unix(0, t.UnixNano()).Equal(t) {
			return nil, false
		}
	}
	b = append(b, recordCompact)
	for _, v := range strs {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	b = binary.AppendVarint(b, int64(s.Confidence))
	b = binary.AppendVarint(b, int64(s.Count))
	var flags byte
	if s.Partial {
		flags |= flagPartial
	}
	b = append(b, flags)
	for _, t := range times {
		b = binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
	}
	return b, true
}

// decodeRecord reads the record stored under the sgi/ key key with value
// v, in either form.
func decodeRecord(key, v []byte) (SightingRecord, error) {
	var rec SightingRecord
	if len(v) > 0 && v[0] == '{' {
		err := json.Unmarshal(v, &rec)
		return rec, err
	}
	if len(v) == 0 || v[0] != recordCompact {
		return rec, fmt.Errorf("unknown record format (first byte %#x of %d)", firstByte(v), len(v))
	}
	origin, seq, err := parseSightingIndKey(key)
	if err != nil {
		return rec, err
	}
	rec.Origin, rec.Seq = origin, seq
	r := compactReader{b: v[1:]}
	s := &rec.Sighting
	s.Indicator.Type = intel.IndicatorType(r.str("indicator type"))
	s.Indicator.Value = r.str("indicator value")
	s.Detector = r.str("detector")
	s.Technique = r.str("technique")
	s.Severity = intel.Severity(r.str("severity"))
	s.Site = r.str("site")
	s.Confidence = r.int("confidence")
	s.Count = r.int("count")
	flags := r.byte("flags")
	s.Partial = flags&flagPartial != 0
	s.FirstSeen = r.time("first seen")
	s.LastSeen = r.time("last seen")
	rec.Received = r.time("received")
	rec.Sent = r.time("sent")
	switch {
	case r.err != nil:
		return SightingRecord{}, r.err
	case flags&^flagPartial != 0:
		return SightingRecord{}, fmt.Errorf("unknown record flags %#x", flags)
	case len(r.b) > 0:
		return SightingRecord{}, fmt.Errorf("%d bytes after the record", len(r.b))
	}
	return rec, nil
}

func firstByte(v []byte) byte {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

// compactReader reads the fields of a compact record in order; the first
// field that is cut short or malformed sets err, and every read after it
// returns the zero value.
type compactReader struct {
	b   []byte
	err error
}

func (r *compactReader) fail(field, what string) {
	if r.err == nil {
		r.err = fmt.Errorf("record field %s: %s", field, what)
	}
	r.b = nil
}

func (r *compactReader) str(field string) string {
	if r.err != nil {
		return ""
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)-k) {
		r.fail(field, "truncated")
		return ""
	}
	v := string(r.b[k : k+int(n)])
	r.b = r.b[k+int(n):]
	return v
}

func (r *compactReader) int(field string) int {
	if r.err != nil {
		return 0
	}
	v, k := binary.Varint(r.b)
	if k <= 0 || int64(int(v)) != v {
		r.fail(field, "truncated or out of range")
		return 0
	}
	r.b = r.b[k:]
	return int(v)
}

func (r *compactReader) byte(field string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.fail(field, "truncated")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *compactReader) time(field string) time.Time {
	if r.err != nil {
		return time.Time{}
	}
	if len(r.b) < 8 {
		r.fail(field, "truncated")
		return time.Time{}
	}
	v := int64(binary.BigEndian.Uint64(r.b))
	r.b = r.b[8:]
	return time.Unix(0, v).UTC()
}
