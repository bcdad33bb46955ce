package store

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

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

// appendSightingRecord (and appendCompactRecord, decodeRecord) write the
// fields these types have: a field added, removed or renamed must be
// taught to them.
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

// jsonRoundTrip is what a reader got back from a record stored as JSON.
func jsonRoundTrip(t testing.TB, rec SightingRecord) (SightingRecord, bool) {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		return SightingRecord{}, false
	}
	var out SightingRecord
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return out, true
}

// checkStoredRecord stores rec's form under its sgi/ key and reads it
// back: a reader gets exactly what it got when every record was JSON.
// It reports whether the compact form was taken.
func checkStoredRecord(t testing.TB, rec SightingRecord) bool {
	t.Helper()
	want, ok := jsonRoundTrip(t, rec)
	v, err := encodeRecord(&rec)
	if !ok {
		if err == nil {
			t.Fatalf("record %+v: stored as %q, want the error json.Marshal returns", rec, v)
		}
		return false
	}
	if err != nil {
		t.Fatalf("record %+v: %v", rec, err)
	}
	if len(rec.Origin) == 0 || len(rec.Origin) > maxOriginLen || len(rec.Sighting.Indicator.Key()) > 1<<16-1 {
		return false // no key can hold it
	}
	key := sightingIndKey(rec.Sighting.Indicator.Key(), rec.Sighting.LastSeen, rec.Origin, rec.Seq)
	got, err := decodeRecord(key, v)
	if err != nil {
		t.Fatalf("record %+v stored as %q: %v", rec, v, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("record stored as %q reads\n%#v\nwant (its JSON form)\n%#v", v, got, want)
	}
	return v[0] == recordCompact
}

// A record reads back as its JSON form did, field for field (times with
// their locations), whichever form it is stored in; the usual ones are
// compact and some four times smaller.
func TestStoredRecordReadsAsJSON(t *testing.T) {
	compact := 0
	recs := sampleRecords()
	for _, r := range sampleRecords() {
		r.Sent = r.Sent.UTC()
		recs = append(recs, r)
	}
	now := recs[0]
	now.Sent, now.Received = now.Sent.UTC(), time.Now().UTC() // a monotonic reading stripped
	recs = append(recs, now)
	neg := recs[0]
	neg.Sent, neg.Sighting.Count = time.Date(1700, 1, 1, 0, 0, 0, 1, time.UTC), -1<<40
	recs = append(recs, neg)
	for _, rec := range recs {
		if checkStoredRecord(t, rec) {
			compact++
		}
	}
	if compact < 20 {
		t.Fatalf("only %d of %d records stored compact", compact, len(recs))
	}
	full := now // every field set, all times UTC
	js, _ := json.Marshal(full)
	v, _ := encodeRecord(&full)
	if v[0] != recordCompact || 3*len(v) > len(js) {
		t.Fatalf("stored in %d bytes (form %d), JSON %d", len(v), v[0], len(js))
	}
}

// A compact record cut short anywhere, with bytes after it, with unknown
// flags or under a malformed key is an error naming what is wrong, never
// a record.
func TestStoredRecordMalformed(t *testing.T) {
	rec := sampleRecords()[0]
	rec.Sent = rec.Sent.UTC()
	v, err := encodeRecord(&rec)
	if err != nil || v[0] != recordCompact {
		t.Fatalf("form %q, %v", v, err)
	}
	key := sightingIndKey(rec.Sighting.Indicator.Key(), rec.Sighting.LastSeen, rec.Origin, rec.Seq)
	for n := range len(v) {
		if _, err := decodeRecord(key, v[:n]); err == nil {
			t.Fatalf("record cut to %d of %d bytes decoded", n, len(v))
		}
	}
	for _, tc := range []struct {
		name string
		key  []byte
		v    []byte
		want string
	}{
		{"trailing", key, append(bytes.Clone(v), 0), "1 bytes after the record"},
		{"flags", key, func() []byte { b := bytes.Clone(v); b[len(b)-33] |= 0x80; return b }(), "unknown record flags 0x80"},
		{"format", key, append([]byte{7}, v[1:]...), "unknown record format (first byte 0x7"},
		{"key", key[:len(key)-1], v, "malformed sighting key"},
		{"huge string", key, []byte{recordCompact, 0xff, 0xff, 0xff, 0xff, 0x0f}, "record field indicator type: truncated"},
	} {
		if _, err := decodeRecord(tc.key, tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// A store whose records were written as JSON reads them as before, beside
// compact ones.
func TestStoredRecordJSONStillRead(t *testing.T) {
	s := openStore(t, DefaultOptions(t.TempDir()))
	k := newKey(t)
	ind := mustIndicator(t, "192.0.2.10")
	put(t, s, sighting(t, k, 1, ind, t0), t0)
	put(t, s, sighting(t, k, 2, ind, t0.Add(time.Second)), t0)
	recs, err := s.SightingsFor(ind, time.Time{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("SightingsFor: %d records, %v", len(recs), err)
	}
	// Rewrite the first as a JSON record, as earlier versions wrote it.
	err = s.db.Update(func(txn *badger.Txn) error {
		r := recs[0]
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return txn.Set(sightingIndKey(ind.Key(), r.Sighting.LastSeen, r.Origin, r.Seq), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.SightingsFor(ind, time.Time{})
	if err != nil || !reflect.DeepEqual(again, recs) {
		t.Fatalf("SightingsFor = %+v, %v; want %+v", again, err, recs)
	}
	all, err := s.Sightings(0)
	if err != nil || len(all) != 2 || !reflect.DeepEqual(all[1], recs[0]) {
		t.Fatalf("Sightings = %+v, %v", all, err)
	}
}

// FuzzStoredRecord: any record reads back as its JSON form does.
func FuzzStoredRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		s := r.Sighting
		f.Add(r.Origin, r.Seq, string(s.Indicator.Type), s.Indicator.Value, s.Detector, s.Technique, string(s.Severity),
			s.Site, s.Confidence, s.Count, s.LastSeen.UnixNano(), int64(0), s.Partial, true)
	}
	f.Fuzz(func(t *testing.T, origin string, seq uint64, typ, value, detector, technique, severity, site string,
		confidence, count int, ns, d int64, partial, utc bool) {
		at := time.Unix(0, ns)
		sent := at.Add(time.Duration(d)).UTC()
		if !utc {
			sent = sent.In(time.FixedZone("", int(d%50000)))
		}
		checkStoredRecord(t, SightingRecord{Origin: origin, Seq: seq, Sighting: intel.Sighting{
			Indicator: intel.Indicator{Type: intel.IndicatorType(typ), Value: value}, Detector: detector, Technique: technique,
			Severity: intel.Severity(severity), Confidence: confidence, Count: count, FirstSeen: at.UTC(), LastSeen: at.UTC(),
			Site: site, Partial: partial}, Received: at.UTC(), Sent: sent})
	})
}
