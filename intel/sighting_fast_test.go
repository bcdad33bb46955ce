package intel

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// slowSighting decodes b as DecodeSighting did before the fast path:
// encoding/json, strictly.
func slowSighting(b []byte) (Sighting, error) {
	var s Sighting
	err := decodeStrict(b, &s)
	return s, err
}

func fastSightingSamples(t testing.TB) [][]byte {
	t.Helper()
	at := time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.UTC)
	east := time.FixedZone("", 5*3600+30*60)
	samples := []Sighting{
		{Indicator: Indicator{Type: IPv4, Value: "198.51.100.7"}, Detector: "ssh-bruteforce", Technique: "T1110.001",
			Severity: SeverityHigh, Confidence: 80, Count: 12, FirstSeen: at.Add(-time.Minute), LastSeen: at, Site: "paris-1"},
		{Indicator: Indicator{Type: Domain, Value: "bad.example"}, Detector: "dns", Confidence: 0, Count: 1,
			FirstSeen: at.In(east), LastSeen: at.In(east)},
		{Indicator: Indicator{Type: IPv6, Value: "2001:db8::1"}, Detector: "x", Confidence: -3, Count: 999999999,
			FirstSeen: time.Date(1200, 1, 1, 0, 0, 0, 0, time.UTC), LastSeen: at},
		{Indicator: Indicator{Type: IPv4, Value: "203.0.113.9"}, Detector: "ssh", Confidence: 40, Count: 2,
			FirstSeen: at, LastSeen: at, Partial: true},
		{}, // every field empty: decodes, fails Validate, the same on both paths
	}
	var out [][]byte
	for _, s := range samples {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// What json.Marshal writes takes the fast path, and decodes to exactly
// what encoding/json gives.
func TestDecodeSightingFastTakesMarshalOutput(t *testing.T) {
	for _, b := range fastSightingSamples(t) {
		var fast Sighting
		if !decodeSightingFast(b, &fast) {
			t.Fatalf("fast path refused %s", b)
		}
		slow, err := slowSighting(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%s:\nfast %#v\nslow %#v", b, fast, slow)
		}
	}
}

// Anything else is left to encoding/json, and DecodeSighting answers as
// it does.
func TestDecodeSightingFastFallsBack(t *testing.T) {
	good := string(fastSightingSamples(t)[0])
	cases := map[string]string{
		"white space":       strings.Replace(good, `,"count"`, `, "count"`, 1),
		"leading space":     " " + good,
		"trailing space":    good + " ",
		"trailing value":    good + "{}",
		"escape":            strings.Replace(good, `"paris-1"`, `"paris\u002d1"`, 1),
		"non-ASCII":         strings.Replace(good, `"paris-1"`, `"paris-é"`, 1),
		"invalid UTF-8":     strings.Replace(good, `"paris-1"`, "\"paris-\xff\"", 1),
		"key case":          strings.Replace(good, `"detector"`, `"Detector"`, 1),
		"repeated key":      strings.Replace(good, `{"indicator"`, `{"site":"a","indicator"`, 1),
		"repeated inner":    strings.Replace(good, `"value":`, `"type":"ipv4","value":`, 1),
		"unknown key":       strings.Replace(good, `{"indicator"`, `{"node":"a","indicator"`, 1),
		"unknown inner key": strings.Replace(good, `"value":`, `"kind":"x","value":`, 1),
		"null":              strings.Replace(good, `"paris-1"`, `null`, 1),
		"fraction":          strings.Replace(good, `"count":12`, `"count":12.0`, 1),
		"exponent":          strings.Replace(good, `"count":12`, `"count":1e1`, 1),
		"leading zero":      strings.Replace(good, `"count":12`, `"count":012`, 1),
		"huge count":        strings.Replace(good, `"count":12`, `"count":99999999999999999999`, 1),
		"ten digits":        strings.Replace(good, `"count":12`, `"count":1000000000`, 1),
		"string count":      strings.Replace(good, `"count":12`, `"count":"12"`, 1),
		"bad time":          strings.Replace(good, `"last_seen":"2026`, `"last_seen":"2026x`, 1),
		"time not string":   strings.Replace(good, `"last_seen":"2026-11-28T12:00:00.123456789Z"`, `"last_seen":0`, 1),
		"partial number":    strings.Replace(good, `"site"`, `"partial":1,"site"`, 1),
		"partial cut":       strings.Replace(good, `"site"`, `"partial":tru,"site"`, 1),
		"partial longer":    strings.Replace(good, `"site"`, `"partial":falsey,"site"`, 1),
		"empty object":      `{}`,
		"array":             `[]`,
		"truncated":         good[:len(good)-1],
		"empty":             ``,
	}
	if len(cases) != 28 || strings.Contains(cases["time not string"], `"last_seen":"`) {
		t.Fatal("a case did not change the sample")
	}
	for name, in := range cases {
		if in == good {
			t.Fatalf("%s: the sample is unchanged", name)
		}
		var fast Sighting
		if decodeSightingFast([]byte(in), &fast) {
			t.Errorf("%s: fast path took %q", name, in)
		}
		got, gerr := DecodeSighting(&Envelope{Kind: KindSighting, Payload: []byte(in)})
		want, werr := slowSighting([]byte(in))
		if werr == nil {
			werr = want.Validate()
		}
		if (gerr == nil) != (werr == nil) || (gerr == nil && !reflect.DeepEqual(got, want)) {
			t.Errorf("%s: DecodeSighting gives %v, %v; encoding/json %v, %v", name, got, gerr, want, werr)
		}
	}
}

// The fast path knows the fields of Sighting and Indicator as they are:
// a field added, renamed or retagged must be taught to it (or it would
// refuse the new key and leave every sighting to encoding/json; a key it
// knows that the type lost would be accepted where encoding/json refuses).
func TestDecodeSightingFastKnowsEveryField(t *testing.T) {
	tags := func(v any) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			out = append(out, rt.Field(i).Tag.Get("json"))
		}
		return out
	}
	want := []string{"indicator", "detector", "technique,omitempty", "severity,omitempty", "confidence", "count", "first_seen", "last_seen", "site,omitempty", "partial,omitempty"}
	if got := tags(Sighting{}); !slices.Equal(got, want) {
		t.Fatalf("Sighting's JSON fields are %q; decodeSightingFast knows %q", got, want)
	}
	if got := tags(Indicator{}); !slices.Equal(got, []string{"type", "value"}) {
		t.Fatalf("Indicator's JSON fields are %q; decodeSightingFast knows type and value", got)
	}
}

// FuzzDecodeSightingFast: whatever the fast path takes, encoding/json
// takes too, with the very same result.
func FuzzDecodeSightingFast(f *testing.F) {
	for _, b := range fastSightingSamples(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"indicator":{"value":"a","type":"b"},"count":-0,"site":""}`))
	f.Add([]byte(`{"detector":"a","detector":"b"}`))
	f.Add([]byte(`{"partial":false,"count":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast Sighting
		if !decodeSightingFast(b, &fast) {
			return
		}
		slow, err := slowSighting(b)
		if err != nil {
			t.Fatalf("fast path took %q, encoding/json refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %#v\nslow %#v", b, fast, slow)
		}
	})
}
