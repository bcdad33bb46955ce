package certify

import (
	"maps"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCollector(t *testing.T) {
	c := newChain()
	c.commands(3)
	e, _ := newEdge(t, votersOf(kA, kB, kC), nil)
	feed(e, c.entries)
	_ = e.AddEntry(c.entries[0]) // duplicate
	ct := c.cert(t, kA, c.last())
	ct.Sig[0] ^= 1
	_ = e.AddCert(ct) // bad signature
	_ = certs(t, e, c, c.last(), kA, kB)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(e))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			if m.GetCounter() != nil {
				got[name] = m.GetCounter().GetValue()
			} else {
				got[name] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{
		"meshward_edge_refused_total{bad_signature}": 1,
		"meshward_edge_refused_total{duplicate}":     1,
		"meshward_edge_applied_entries_total":        3,
		"meshward_edge_applied_index":                float64(c.last()),
		"meshward_edge_pending_entries":              0,
		"meshward_edge_pending_certificates":         0,
		"meshward_edge_equivocations":                0,
	}
	if !maps.Equal(got, want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
}

// A replayed certificate is refused as a duplicate without a signature
// check; the same statement signed again is a duplicate too.
func TestEdgeDuplicateCertificate(t *testing.T) {
	c := newChain()
	c.commands(3)
	e, _ := newEdge(t, votersOf(kA, kB, kC), nil)
	ct := c.cert(t, kA, c.last())
	if err := e.AddCert(ct); err != nil {
		t.Fatal(err)
	}
	wantReason(t, e.AddCert(ct), ReasonDuplicate)
	bad := ct
	bad.Sig = append([]byte(nil), ct.Sig...)
	bad.Sig[5] ^= 1
	wantReason(t, e.AddCert(bad), ReasonBadSignature)
	if n := e.Stats().Certs; n != 1 {
		t.Fatalf("%d certificates held", n)
	}
}
