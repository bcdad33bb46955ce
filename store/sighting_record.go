package store

import (
	"encoding/json"
	"strconv"
	"time"
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
