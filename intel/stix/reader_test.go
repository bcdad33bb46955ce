package stix_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/stix"
)

const mixed = `{
  "type": "bundle",
  "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
  "objects": [
    {"type": "identity", "spec_version": "2.1", "id": "identity--023d105b-752e-4e3c-941c-7d3f3cb15e9e", "created": "2017-04-14T13:07:49.812Z", "modified": "2017-04-14T13:07:49.812Z", "name": "ACME CERT", "identity_class": "organization"},
    {"type": "marking-definition", "spec_version": "2.1", "id": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da", "created": "2017-01-20T00:00:00.000Z", "definition_type": "tlp", "name": "TLP:GREEN", "definition": {"tlp": "green"}},
    {"type": "indicator", "spec_version": "2.1", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "created": "2024-01-02T03:04:05.000Z", "modified": "2024-01-02T03:04:05.000Z",
     "name": "C2", "pattern": "[ipv4-addr:value = '198.51.100.1' OR ipv4-addr:value = '198.51.100.0/24'] OR [domain-name:value = 'C2.Example.COM']",
     "pattern_type": "stix", "valid_from": "2024-01-02T03:04:05Z", "valid_until": "2024-02-02T03:04:05Z", "confidence": 85, "labels": ["c2"],
     "kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": "T1071.001"}],
     "object_marking_refs": ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]},
    {"type": "malware", "spec_version": "2.1", "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b", "created": "2024-01-02T03:04:05.000Z", "modified": "2024-01-02T03:04:05.000Z", "name": "x", "is_family": false},
    {"type": "relationship", "spec_version": "2.1", "id": "relationship--44298a74-ba52-4f0c-87a3-1824e67d7fad", "created": "2024-01-02T03:04:05.000Z", "modified": "2024-01-02T03:04:05.000Z", "relationship_type": "indicates", "source_ref": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "target_ref": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b"},
    {"type": "indicator", "spec_version": "2.1", "id": "indicator--9e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "created": "2024-01-02T03:04:05.000Z", "modified": "2024-01-02T03:04:05.000Z", "pattern": "title:x", "pattern_type": "sigma", "valid_from": "2024-01-02T03:04:05Z"},
    {"type": "ipv6-addr", "spec_version": "2.1", "id": "ipv6-addr--1e61d36c-a16c-53b7-a80f-2a00161c96b1", "value": "2001:DB8::1"},
    {"type": "url", "spec_version": "2.1", "id": "url--c1477287-23ac-5971-a010-5c287877fa60", "value": "https://example.com/a"},
    {"type": "file", "spec_version": "2.1", "id": "file--66156fad-2a7d-5237-bbb4-ba1912887cfe", "hashes": {"SHA-256": "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB", "SSDEEP": "3:x:y"}},
    {"type": "report", "spec_version": "2.1", "id": "report--84e4d88f-44ea-4bcd-bbf3-b2c1c320bcb3", "created": "2024-01-02T03:04:05.000Z", "modified": "2024-01-02T03:04:05.000Z", "name": "r", "published": "2024-01-02T03:04:05Z", "object_refs": ["indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"]}
  ]
}`

func TestReadMixedBundle(t *testing.T) {
	entries, st, err := stix.Reader{}.ReadAll(strings.NewReader(mixed), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Indicator.Key())
	}
	want := []string{"ipv4:198.51.100.1", "cidr:198.51.100.0/24", "domain:c2.example.com", "ipv6:2001:db8::1",
		"url:https://example.com/a", "sha256:" + strings.Repeat("ab", 32)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("entries\n %v\nwant\n %v", got, want)
	}
	e := entries[0]
	if e.Confidence != 85 || !e.HasConfidence || e.Technique != "T1071.001" || e.TLP != stix.TLPGreen ||
		e.ValidUntil.IsZero() || e.Labels[0] != "c2" || e.Index != 2 {
		t.Errorf("first entry %+v", e)
	}
	if st.Objects != 10 || st.Entries != 6 {
		t.Errorf("stats %+v", st)
	}
	for k, n := range map[string]int{"identity": 1, "marking-definition": 1, "malware": 1, "relationship": 1, "report": 1, "indicator/pattern_type=sigma": 1} {
		if st.Skipped[k] != n {
			t.Errorf("skipped %s: %d, want %d (%v)", k, st.Skipped[k], n, st.Skipped)
		}
	}
}

// obj is one indicator object with a field replaced.
func obj(field, value string) string {
	fields := map[string]string{
		"type": `"indicator"`, "spec_version": `"2.1"`, "id": `"indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"`,
		"created": `"2024-01-02T03:04:05.000Z"`, "modified": `"2024-01-02T03:04:05.000Z"`,
		"pattern": `"[ipv4-addr:value = '198.51.100.1']"`, "pattern_type": `"stix"`, "valid_from": `"2024-01-02T03:04:05Z"`,
	}
	fields[field] = value
	var b strings.Builder
	b.WriteString("{")
	first := true
	for _, k := range []string{"type", "spec_version", "id", "created", "modified", "pattern", "pattern_type", "valid_from", "valid_until", "confidence", "labels", "description", "name"} {
		if v, ok := fields[k]; ok {
			if !first {
				b.WriteString(",")
			}
			first = false
			b.WriteString(`"` + k + `":` + v)
		}
	}
	return b.String() + "}"
}

func bundle(objs ...string) string {
	return `{"type":"bundle","id":"bundle--5d0092c5-5f74-4287-9642-33f4c354e56d","objects":[` + strings.Join(objs, ",") + `]}`
}

func TestReadMalformed(t *testing.T) {
	good := obj("", "")
	long := `"https://example.com/` + strings.Repeat("a", 3000) + `"`
	for _, tc := range []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"broken JSON", bundle(good)[:60], []string{"broken JSON"}},
		{"not an object", `[1,2]`, []string{"not a JSON object"}},
		{"not a bundle", `{"type":"report","objects":[]}`, []string{`"report"`, "bundle"}},
		{"objects not array", `{"type":"bundle","objects":{}}`, []string{"objects is not an array"}},
		{"trailing data", bundle(good) + `{}`, []string{"data after"}},
		{"bad pattern", bundle(good, obj("pattern", `"[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '1.2.3.5']"`)), []string{"object 1", "pattern", "offset 29", "AND"}},
		{"pattern unsupported type", bundle(obj("pattern", `"[process:name = 'x']"`)), []string{"object 0", "pattern", "process"}},
		{"bad value in pattern", bundle(obj("pattern", `"[ipv4-addr:value = '1.2.3.999']"`)), []string{"object 0", "pattern", "1.2.3.999"}},
		{"wrong type confidence", bundle(obj("confidence", `"high"`)), []string{"object 0", "confidence", "want a int"}},
		{"wrong type labels", bundle(obj("labels", `"c2"`)), []string{"object 0", "labels"}},
		{"confidence range", bundle(obj("confidence", `101`)), []string{"confidence", "101"}},
		{"bad timestamp", bundle(obj("valid_from", `"2024-13-02T03:04:05Z"`)), []string{"object 0", "valid_from", "2024-13-02"}},
		{"timestamp not UTC", bundle(obj("created", `"2024-01-02T03:04:05+01:00"`)), []string{"created", "UTC"}},
		{"no valid_from", bundle(obj("valid_from", `null`)), []string{"valid_from", "missing"}},
		{"valid_until before", bundle(obj("valid_until", `"2024-01-01T00:00:00Z"`)), []string{"valid_until", "not after"}},
		{"bad id", bundle(obj("id", `"indicator--nope"`)), []string{"object 0", "id"}},
		{"id of other type", bundle(obj("id", `"malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"`)), []string{"id", "indicator--"}},
		{"no type", bundle(`{"id":"x"}`), []string{"object 0", "type"}},
		{"oversized value", bundle(`{"type":"url","id":"url--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f","value":` + long + `}`), []string{"object 0", "value", "limit"}},
		{"oversized description", bundle(obj("description", `"`+strings.Repeat("d", 5000)+`"`)), []string{"description", "5000 bytes"}},
		{"too many labels", bundle(obj("labels", `["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]`)), []string{"labels", "17"}},
		{"bad hash", bundle(`{"type":"file","id":"file--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f","hashes":{"SHA-256":"xyz"}}`), []string{"hashes.SHA-256"}},
		{"wrong address family", bundle(`{"type":"ipv4-addr","id":"ipv4-addr--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f","value":"2001:db8::1"}`), []string{"value", "ipv4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, _, err := stix.Reader{}.ReadAll(strings.NewReader(tc.in), 0)
			if err == nil {
				t.Fatalf("no error; %d entries", len(entries))
			}
			if entries != nil {
				t.Errorf("%d entries returned with the error", len(entries))
			}
			if !errors.Is(err, stix.ErrMalformed) {
				t.Errorf("error does not wrap ErrMalformed: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestReadBounds(t *testing.T) {
	in := bundle(obj("", ""), obj("", ""), obj("", ""))
	if _, _, err := (stix.Reader{MaxObjects: 2}).ReadAll(strings.NewReader(in), 0); err == nil || !strings.Contains(err.Error(), "more than 2 objects") {
		t.Errorf("max objects: %v", err)
	}
	if _, _, err := (stix.Reader{MaxBytes: 100}).ReadAll(strings.NewReader(in), 0); err == nil || !strings.Contains(err.Error(), "over 100 bytes") {
		t.Errorf("max bytes: %v", err)
	}
	if _, _, err := (stix.Reader{}).ReadAll(strings.NewReader(in), 2); err == nil || !strings.Contains(err.Error(), "more than 2 indicators") {
		t.Errorf("max entries: %v", err)
	}
	if es, _, err := (stix.Reader{MaxBytes: int64(len(in))}).ReadAll(strings.NewReader(in), 3); err != nil || len(es) != 3 {
		t.Errorf("exactly at the bounds: %d entries, %v", len(es), err)
	}
}

// TestReadStreams: an entry is yielded before the rest of the input is
// read, so a large bundle is never held whole.
func TestReadStreams(t *testing.T) {
	r, w := ioPipe()
	done := make(chan error, 1)
	got := make(chan intel.Indicator, 1)
	go func() {
		_, err := stix.ReadBundle(r, func(e stix.Entry) error { got <- e.Indicator; return nil })
		done <- err
	}()
	w.Write([]byte(`{"type":"bundle","objects":[` + obj("", "") + `,`))
	if i := <-got; i.Value != "198.51.100.1" {
		t.Fatalf("got %v", i)
	}
	w.Write([]byte(`{"type":"malware","id":"malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b"}]}`))
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEnvelope(t *testing.T) {
	env, st, err := stix.Reader{}.ReadEnvelope(bytes.NewReader([]byte(`{"more":true,"next":"abc","objects":[`+obj("", "")+`]}`)), func(stix.Entry) error { return nil })
	if err != nil || !env.More || env.Next != "abc" || st.Entries != 1 {
		t.Fatalf("%+v %+v %v", env, st, err)
	}
	if _, _, err := (stix.Reader{}).ReadEnvelope(strings.NewReader(`{"more":"yes"}`), nil); err == nil || !strings.Contains(err.Error(), "more") {
		t.Fatalf("more as a string: %v", err)
	}
}

// FuzzReadBundle: no input panics the reader; every entry it yields is a
// valid indicator, and an error is ErrMalformed.
func FuzzReadBundle(f *testing.F) {
	f.Add(mixed)
	f.Add(bundle(obj("", "")))
	f.Add(bundle(obj("pattern", `"[file:hashes.MD5 = 'x'] OR [url:value = 'http://a.example/']"`)))
	f.Add(`{"type":"bundle","objects":[{"type":"file","id":"file--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f","hashes":{"SHA-1":"` + strings.Repeat("a", 40) + `"}}]}`)
	f.Add(`{"more":true,"objects":null}`)
	f.Fuzz(func(t *testing.T, in string) {
		_, err := (stix.Reader{MaxBytes: 1 << 20, MaxObjects: 1000}).ReadBundle(strings.NewReader(in), func(e stix.Entry) error {
			if err := e.Indicator.Validate(); err != nil {
				t.Fatalf("entry %+v: %v", e, err)
			}
			return nil
		})
		if err != nil && !errors.Is(err, stix.ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
	})
}
