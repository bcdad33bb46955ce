package process

import (
	"fmt"
	"testing"
	"time"
)

func benchIncidents(n int) []Incident {
	recs := make([]Record, 0, n)
	for i := range n {
		d := t0.Add(time.Duration(i) * time.Second)
		recs = append(recs, Record{Indicator: fmt.Sprintf("ipv4:10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Node: "A",
			Site: fmt.Sprintf("site-%d", i%20), Rule: fmt.Sprintf("rule-%d", i%7), Severity: "high",
			FirstEvent: d.Add(-time.Duration(i%30) * time.Second), Detected: d, Received: d.Add(time.Duration(i%5) * time.Second),
			Committed: d.Add(2 * time.Second), Enforced: d.Add(3 * time.Second), Acked: d.Add(time.Duration(i%3600) * time.Second)})
	}
	return Merge(recs, 1)
}

// BenchmarkSummarize measures 10,000 incidents grouped by site.
func BenchmarkSummarize(b *testing.B) {
	incs := benchIncidents(10000)
	exps := []Expectation{{Name: "ack", Stage: StageTriage, Within: 15 * time.Minute}}
	b.ResetTimer()
	for b.Loop() {
		Summarize(incs, nil, exps, BySite, t0, t0.Add(30*24*time.Hour))
	}
}

// BenchmarkRefresh is one evaluation pass over 10,000 stored records on
// Badger (on disk), nothing new to observe.
func BenchmarkRefresh(b *testing.B) {
	st := openStore(b)
	r := NewRecorder(st, "A", func() time.Time { return t0.Add(48 * time.Hour) })
	var recs []Record
	for _, inc := range benchIncidents(10000) {
		recs = append(recs, inc.Nodes[0])
	}
	if err := r.UpdateMany(recs); err != nil {
		b.Fatal(err)
	}
	exps := []Expectation{{Name: "ack", Stage: StageTriage, Within: 15 * time.Minute}}
	if _, _, err := r.Refresh(exps); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := r.Refresh(exps); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseEvent checks and links one ticket naming three indicators.
func BenchmarkParseEvent(b *testing.B) {
	body := []byte(`{"source":"ticket","kind":"ticket_closed","external_id":"INC-42","time":"2026-12-01T11:30:00Z",
		"text":"Blocked 203.0.113.9 and 198.51.100.7 at the firewall; C2 evil.example.net. Closing.","indicators":["192.0.2.1"]}`)
	for b.Loop() {
		if _, err := ParseEvent(body, evNow); err != nil {
			b.Fatal(err)
		}
	}
}
