package stix_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/stix"
	"github.com/meshward/meshward/intel/stix/stixtest"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func ind(t *testing.T, typ intel.IndicatorType, v string) intel.Indicator {
	t.Helper()
	i, err := intel.NewIndicator(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// sample is reports, sightings and policies of every indicator type.
func sample(t *testing.T) ([]stix.Report, []stix.Sighting, []intel.Policy) {
	inds := []intel.Indicator{
		ind(t, intel.IPv4, "203.0.113.7"), ind(t, intel.IPv6, "2001:db8::7"), ind(t, intel.CIDR, "198.51.100.0/24"),
		ind(t, intel.CIDR, "2001:db8:1::/48"), ind(t, intel.Domain, "evil.example.com"),
		ind(t, intel.URL, "https://evil.example.com/x?q='1'"), ind(t, intel.SHA256, strings.Repeat("ab", 32)),
	}
	if i, err := intel.NewIndicator("md5", strings.Repeat("c", 32)); err == nil {
		inds = append(inds, i)
	}
	if i, err := intel.NewIndicator("sha1", strings.Repeat("d", 40)); err == nil {
		inds = append(inds, i)
	}
	var reps []stix.Report
	var sights []stix.Sighting
	var pols []intel.Policy
	for n, i := range inds {
		r := intel.IndicatorReport{Indicator: i, Source: "feed:test", Confidence: 10 * n, Labels: []string{"c2", "botnet"},
			Description: "it's \"bad\" <really>", ValidFrom: t0.Add(time.Duration(n) * time.Minute)}
		if n%2 == 0 {
			r.Technique = "T1110.001"
			r.ValidUntil = r.ValidFrom.Add(24 * time.Hour)
		}
		if n == 3 {
			r.Labels, r.Technique = nil, "T1071"
		}
		reps = append(reps, stix.Report{Origin: fmt.Sprintf("12D3KooWnode%d", n%3), Report: r, Sent: r.ValidFrom.Add(time.Second)})
		s := intel.Sighting{Indicator: i, Detector: "ssh-bruteforce", Technique: r.Technique, Severity: intel.SeverityHigh,
			Confidence: 80, Count: n + 1, FirstSeen: t0, LastSeen: t0.Add(time.Hour), Site: "paris"}
		sights = append(sights, stix.Sighting{Origin: fmt.Sprintf("12D3KooWnode%d", n%2), Sighting: s, Sent: s.LastSeen})
		act := intel.ActionBlock
		if n == 1 {
			act = intel.ActionAllow
		}
		pols = append(pols, intel.NewPolicy(act, i, "corroborated by 3 sites", "operator:alice", t0, time.Duration(n)*time.Hour))
	}
	return reps, sights, pols
}

func export(t *testing.T, tlp string, reps []stix.Report, sights []stix.Sighting, pols []intel.Policy) []byte {
	t.Helper()
	m, err := stix.NewMapper(tlp)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	bw, err := stix.NewBundleWriter(&buf, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		objs, err := m.ReportObjects(r)
		if err != nil {
			t.Fatal(err)
		}
		bw.Write(objs...)
	}
	for _, s := range sights {
		objs, err := m.SightingObjects(s)
		if err != nil {
			t.Fatal(err)
		}
		bw.Write(objs...)
	}
	for _, p := range pols {
		objs, err := m.PolicyObjects(p)
		if err != nil {
			t.Fatal(err)
		}
		bw.Write(objs...)
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestExportValidatesAgainstSchemas checks every exported object against
// the OASIS schema of its type and the bundle against bundle.json.
func TestExportValidatesAgainstSchemas(t *testing.T) {
	v := stixtest.New(t)
	reps, sights, pols := sample(t)
	for _, tlp := range []string{"", stix.TLPGreen, stix.TLPAmberStrict} {
		b := export(t, tlp, reps, sights, pols)
		counts, err := v.Bundle(b)
		if err != nil {
			t.Fatalf("tlp %q: %v\n%s", tlp, err, b)
		}
		for _, typ := range []string{"indicator", "sighting", "identity", "attack-pattern", "relationship"} {
			if counts[typ] == 0 {
				t.Errorf("tlp %q: no %s validated: %v", tlp, typ, counts)
			}
		}
		if (tlp != "") != (counts["marking-definition"] == 1) {
			t.Errorf("tlp %q: %d marking definitions", tlp, counts["marking-definition"])
		}
		t.Logf("tlp %q: validated %v", tlp, counts)
	}
	// The validator can fail: an indicator without its pattern is refused.
	bad := `{"type":"indicator","spec_version":"2.1","id":"indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f","created":"2026-01-01T00:00:00.000Z","modified":"2026-01-01T00:00:00.000Z","pattern_type":"stix","valid_from":"2026-01-01T00:00:00Z"}`
	if _, err := v.Object([]byte(bad)); err == nil {
		t.Fatal("an indicator without a pattern validated")
	}
}

func TestExportIsDeterministic(t *testing.T) {
	reps, sights, pols := sample(t)
	a := export(t, stix.TLPGreen, reps, sights, pols)
	b := export(t, stix.TLPGreen, reps, sights, pols)
	if !bytes.Equal(a, b) {
		t.Fatal("two exports of the same data differ")
	}
	// Different data, different bundle id.
	c := export(t, stix.TLPGreen, reps[1:], sights, pols)
	var ba, bc struct{ ID string }
	json.Unmarshal(a, &ba)
	json.Unmarshal(c, &bc)
	if ba.ID == "" || ba.ID == bc.ID {
		t.Fatalf("bundle ids %q and %q", ba.ID, bc.ID)
	}
	// Every id is unique but the shared ones are written once.
	var bundle struct{ Objects []struct{ ID, Type string } }
	json.Unmarshal(a, &bundle)
	seen := map[string]bool{}
	for _, o := range bundle.Objects {
		if seen[o.ID] {
			t.Errorf("id %s (%s) written twice", o.ID, o.Type)
		}
		seen[o.ID] = true
	}
}

// TestExportReimport: reports exported and read back give the same
// reports.
func TestExportReimport(t *testing.T) {
	reps, sights, pols := sample(t)
	b := export(t, stix.TLPAmber, reps, sights, pols)
	entries, st, err := stix.Reader{}.ReadAll(bytes.NewReader(b), 0)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string][]stix.Entry{}
	for _, e := range entries {
		byID[e.ObjectID] = append(byID[e.ObjectID], e)
		if e.TLP != stix.TLPAmber {
			t.Errorf("%s: TLP %q, want amber", e.ObjectID, e.TLP)
		}
	}
	m, _ := stix.NewMapper(stix.TLPAmber)
	for _, r := range reps {
		objs, _ := m.ReportObjects(r)
		es := byID[objs[0].ID]
		if len(es) != 1 {
			t.Fatalf("report %s: %d entries", r.Report.Indicator.Key(), len(es))
		}
		got, err := es[0].Report(r.Report.Source, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(r.Report) || !got.ValidFrom.Equal(r.Report.ValidFrom) {
			t.Errorf("re-imported\n %+v\nwant\n %+v", got, r.Report)
		}
	}
	for _, p := range pols {
		objs, _ := m.PolicyObjects(p)
		es := byID[objs[0].ID]
		if len(es) != 1 || es[0].Indicator != p.Indicator || !es[0].ValidFrom.Equal(p.CreatedAt) || !es[0].ValidUntil.Equal(p.ExpiresAt) {
			t.Errorf("policy %s re-imported as %+v", p.ID, es)
		}
	}
	if st.Entries != len(reps)+len(sights)+len(pols) {
		t.Errorf("%d entries, want %d", st.Entries, len(reps)+len(sights)+len(pols))
	}
	for _, typ := range []string{"sighting", "identity", "attack-pattern", "relationship", "marking-definition"} {
		if st.Skipped[typ] == 0 {
			t.Errorf("no %s skipped: %v", typ, st.Skipped)
		}
	}
}

func BenchmarkExport(b *testing.B) {
	m, _ := stix.NewMapper(stix.TLPGreen)
	base := intel.NewPolicy(intel.ActionBlock, intel.Indicator{}, "", "", t0, 0)
	_ = base
	const n = 10000
	recs := make([]stix.Report, n)
	for i := range recs {
		in := intel.IndicatorFromAddr(netipAddr(i))
		recs[i] = stix.Report{Origin: "12D3KooWnode", Report: intel.IndicatorReport{Indicator: in, Source: "feed", Confidence: 50,
			Technique: "T1110", ValidFrom: t0.Add(time.Duration(i) * time.Second)}}
	}
	b.ReportAllocs()
	for b.Loop() {
		var buf bytes.Buffer
		bw, _ := stix.NewBundleWriter(&buf, m)
		for _, r := range recs {
			objs, _ := m.ReportObjects(r)
			bw.Write(objs...)
		}
		if err := bw.Close(); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(buf.Len()))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/report")
}

var _ = slices.Contains[[]string]

func netipAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}
