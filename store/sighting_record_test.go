package store

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

func sampleRecords() []SightingRecord {
	at := time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.UTC)
	east := time.FixedZone("", 5*3600+30*60)
	full := SightingRecord{
		Origin: "12D3KooWGKtthn8FNSWeFmJvH6Hj7kpidWra9Q1V91GgkvNZbog5", Seq: 1<<64 - 1,
		Sighting: intel.Sighting{Indicator: intel.Indicator{Type: intel.IPv4, Value: "198.51.100.7"}, Detector: "ssh-bruteforce",
			Technique: "T1110.001", Severity: intel.SeverityHigh, Confidence: 80, Count: 12,
			FirstSeen: at.Add(-time.Minute), LastSeen: at, Site: "paris-1"},
		Received: at, Sent: at.In(east),
	}
	bare := full
	bare.Sighting.Technique, bare.Sighting.Severity, bare.Sighting.Site, bare.Sighting.Confidence = "", "", "", -7
	partial := bare
	partial.Sighting.Partial = true
	var out []SightingRecord
	out = append(out, full, bare, partial, SightingRecord{})
	for _, odd := range []string{`a"b`, `a\b`, "<script>", "a&b", "é", "\xff", "\n", "\u2028", "\x7f", ""} {
		r := full
		r.Sighting.Site = odd
		out = append(out, r)
		r = full
		r.Sighting.Indicator.Value = odd
		out = append(out, r)
	}
	far := full
	far.Sighting.LastSeen = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // MarshalJSON refuses it
	return append(out, far)
}

// The stored form of a record is json.Marshal's, byte for byte, and an
// error where json.Marshal errs.
func TestEncodeSightingRecordIsJSONMarshal(t *testing.T) {
	fast := 0
	for i, rec := range sampleRecords() {
		want, werr := json.Marshal(rec)
		got, gerr := encodeSightingRecord(&rec)
		if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("record %d:\ngot  %s, %v\nwant %s, %v", i, got, gerr, want, werr)
		}
		if _, ok := appendSightingRecord(nil, &rec); ok {
			fast++
		}
	}
	if fast < 4 {
		t.Fatalf("only %d records took the fast path", fast)
	}
}

// appendSightingRecord writes the fields these types have: a field
// added, removed or renamed must be taught to it.
func TestEncodeSightingRecordKnowsEveryField(t *testing.T) {
	fields := func(v any) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			out = append(out, rt.Field(i).Name+" "+rt.Field(i).Type.String()+" "+rt.Field(i).Tag.Get("json"))
		}
		return out
	}
	for _, tc := range []struct {
		v    any
		want []string
	}{
		{SightingRecord{}, []string{"Origin string ", "Seq uint64 ", "Sighting intel.Sighting ", "Received time.Time ", "Sent time.Time "}},
		{intel.Sighting{}, []string{"Indicator intel.Indicator indicator", "Detector string detector",
			"Technique string technique,omitempty", "Severity intel.Severity severity,omitempty", "Confidence int confidence",
			"Count int count", "FirstSeen time.Time first_seen", "LastSeen time.Time last_seen", "Site string site,omitempty",
			"Partial bool partial,omitempty"}},
		{intel.Indicator{}, []string{"Type intel.IndicatorType type", "Value string value"}},
	} {
		if got := fields(tc.v); !slices.Equal(got, tc.want) {
			t.Fatalf("%T has fields %q; appendSightingRecord knows %q", tc.v, got, tc.want)
		}
	}
}

// FuzzEncodeSightingRecord: any record encodes as json.Marshal encodes it.
func FuzzEncodeSightingRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		s := r.Sighting
		f.Add(r.Origin, r.Seq, string(s.Indicator.Type), s.Indicator.Value, s.Detector, s.Technique, string(s.Severity),
			s.Site, s.Confidence, s.Count, s.LastSeen.UnixNano(), s.Partial)
	}
	f.Fuzz(func(t *testing.T, origin string, seq uint64, typ, value, detector, technique, severity, site string,
		confidence, count int, ns int64, partial bool) {
		at := time.Unix(0, ns)
		rec := SightingRecord{Origin: origin, Seq: seq, Sighting: intel.Sighting{
			Indicator: intel.Indicator{Type: intel.IndicatorType(typ), Value: value}, Detector: detector, Technique: technique,
			Severity: intel.Severity(severity), Confidence: confidence, Count: count, FirstSeen: at.UTC(), LastSeen: at,
			Site: site, Partial: partial}, Received: at.UTC(), Sent: at.In(time.FixedZone("", int(ns%50000)))}
		want, werr := json.Marshal(rec)
		got, gerr := encodeSightingRecord(&rec)
		if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("got  %s, %v\nwant %s, %v", got, gerr, want, werr)
		}
	})
}
