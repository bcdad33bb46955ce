package store

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

func report(t testing.TB, k ed25519.PrivateKey, seq uint64, value string, ts time.Time) *intel.Envelope {
	t.Helper()
	r := intel.IndicatorReport{
		Indicator:  mustIndicator(t, value),
		Source:     "operator:alice",
		Confidence: 60,
		Labels:     []string{"c2"},
		ValidFrom:  ts,
	}
	return seal(t, k, intel.KindIndicator, seq, ts, r)
}

func TestIndicatorReports(t *testing.T) {
	for _, o := range openers() {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			a, b := newKey(t), newKey(t)
			if got, err := s.IndicatorReports(10); err != nil || len(got) != 0 {
				t.Fatalf("empty store: %v, %v", got, err)
			}
			// Reports and sightings interleaved in arrival order, plus a
			// heartbeat (which the node never stores, but the store takes).
			put(t, s, report(t, a, 1, "c2.example.net", t0), t0)
			put(t, s, sighting(t, a, 2, mustIndicator(t, "203.0.113.7"), t0), t0.Add(time.Second))
			put(t, s, report(t, b, 1, "198.51.100.0/24", t0), t0.Add(2*time.Second))
			put(t, s, heartbeat(t, b, 2), t0.Add(3*time.Second))
			for i := range 5 {
				put(t, s, sighting(t, b, uint64(3+i), mustIndicator(t, fmt.Sprintf("203.0.113.%d", i+10)), t0), t0.Add(time.Duration(4+i)*time.Second))
			}
			put(t, s, report(t, a, 3, "evil.example", t0.Add(time.Minute)), t0.Add(time.Minute))
			// A duplicate is not listed twice.
			put(t, s, report(t, a, 3, "evil.example", t0.Add(time.Minute)), t0.Add(2*time.Minute))

			got, err := s.IndicatorReports(0)
			if err != nil {
				t.Fatal(err)
			}
			want := []struct {
				origin string
				seq    uint64
				value  string
			}{{nodeID(a), 3, "evil.example"}, {nodeID(b), 1, "198.51.100.0/24"}, {nodeID(a), 1, "c2.example.net"}}
			if len(got) != len(want) {
				t.Fatalf("IndicatorReports(0) returned %d records, want %d: %+v", len(got), len(want), got)
			}
			for i, w := range want {
				g := got[i]
				if g.Origin != w.origin || g.Seq != w.seq || g.Report.Indicator.Value != w.value {
					t.Errorf("record %d = %s/%d %s, want %s/%d %s", i, g.Origin, g.Seq, g.Report.Indicator.Value, w.origin, w.seq, w.value)
				}
			}
			if !got[0].Received.Equal(t0.Add(time.Minute)) || !got[0].Sent.Equal(t0.Add(time.Minute)) {
				t.Errorf("newest record received %s sent %s, want both %s", got[0].Received, got[0].Sent, t0.Add(time.Minute))
			}
			if got[0].Report.Source != "operator:alice" || len(got[0].Report.Labels) != 1 {
				t.Errorf("report decoded as %+v", got[0].Report)
			}

			limited, err := s.IndicatorReports(2)
			if err != nil || len(limited) != 2 || limited[1].Seq != 1 || limited[1].Origin != nodeID(b) {
				t.Fatalf("IndicatorReports(2) = %+v, %v", limited, err)
			}

			// Pruned with their envelopes.
			if _, err := s.Prune(t0.Add(30 * time.Second)); err != nil {
				t.Fatal(err)
			}
			got, err = s.IndicatorReports(0)
			if err != nil || len(got) != 1 || got[0].Report.Indicator.Value != "evil.example" {
				t.Fatalf("after prune: %+v, %v", got, err)
			}
		})
	}
}

// BenchmarkIndicatorReports lists the 100 newest reports of a store where
// they are 1 in 100 envelopes.
func BenchmarkIndicatorReports(b *testing.B) {
	s := openStore(b, Options{InMemory: true})
	k := newKey(b)
	for i := range 10000 {
		seq := uint64(i + 1)
		at := t0.Add(time.Duration(i) * time.Millisecond)
		if i%100 == 0 {
			put(b, s, report(b, k, seq, fmt.Sprintf("r%d.example", i), at), at)
		} else {
			put(b, s, sighting(b, k, seq, mustIndicator(b, fmt.Sprintf("203.0.%d.%d", i/250%250, i%250+1)), at), at)
		}
	}
	for b.Loop() {
		got, err := s.IndicatorReports(100)
		if err != nil || len(got) != 100 {
			b.Fatalf("%d reports, %v", len(got), err)
		}
	}
}
