package refusal

import (
	"maps"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCounterAndCollector(t *testing.T) {
	a, b := New(nil), New(nil)
	a.Refuse("/p/1", "not_member", "", nil)
	a.Refuse("/p/1", "not_member", "", nil)
	b.Refuse("/p/1", "not_member", "", nil)
	b.Refuse("connection", "banned", "", nil)
	if got := a.Count("/p/1", "not_member"); got != 2 {
		t.Fatalf("count %d, want 2", got)
	}
	if got := a.Count("/p/1", "other"); got != 0 {
		t.Fatalf("unseen count %d, want 0", got)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(a, b, nil))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[Key]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "meshward_transport_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var k Key
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "protocol":
					k.Protocol = l.GetValue()
				case "reason":
					k.Reason = l.GetValue()
				}
			}
			got[k] = m.GetCounter().GetValue()
		}
	}
	want := map[Key]float64{{"/p/1", "not_member"}: 3, {"connection", "banned"}: 1}
	if !maps.Equal(got, want) {
		t.Fatalf("exported %v, want %v", got, want)
	}
}
