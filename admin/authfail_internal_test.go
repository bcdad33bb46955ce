package admin

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

// TestAuthAuditBounded: failures from many more sources than are tracked
// give a bounded number of entries (the sources beyond the bound share
// one), the memory stays bounded, and the counts add up to every failure.
func TestAuthAuditBounded(t *testing.T) {
	var a authAudit
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	const sources, each = 4 * authAuditSources, 3
	var entries []AuditEntry
	for i := range sources * each {
		now = now.Add(time.Millisecond)
		entries = append(entries, a.fail(now, fmt.Sprintf("tcp:198.18.%d.%d", i%sources/256, i%sources%256), authUnknown, "GET /v1/status")...)
		if len(a.sources) > authAuditSources+1 || a.order.Len() != len(a.sources) {
			t.Fatalf("tracking %d sources (%d in order), bound %d+1", len(a.sources), a.order.Len(), authAuditSources)
		}
	}
	if len(entries) != authAuditSources+1 {
		t.Fatalf("%d entries within the minute, want one per tracked source and one for the others (%d)", len(entries), authAuditSources+1)
	}
	entries = append(entries, a.flush(now, true)...)
	total, other := 0, 0
	for _, e := range entries {
		total += e.Count
		if e.Target == authAuditOverflow {
			other += e.Count
		}
	}
	if total != sources*each {
		t.Fatalf("entries count %d failures, want %d", total, sources*each)
	}
	if other != (sources-authAuditSources)*each {
		t.Fatalf("the other sources' entries count %d, want %d", other, (sources-authAuditSources)*each)
	}
	// Quiet for a minute: every source is forgotten.
	if es := a.flush(now.Add(authAuditEvery), false); len(es) != 0 || len(a.sources) != 0 || a.order.Len() != 0 {
		t.Fatalf("after a quiet minute: %d entries, %d sources, %d in order", len(es), len(a.sources), a.order.Len())
	}
}

// TestAuthAuditOncePerMinute: a source failing steadily gets one entry
// per minute at most, each counting what came since the last.
func TestAuthAuditOncePerMinute(t *testing.T) {
	var a authAudit
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var entries []AuditEntry
	const n = 600 // one a second for ten minutes
	for i := range n {
		at := start.Add(time.Duration(i) * time.Second)
		for _, e := range a.fail(at, "unix:/run/admin.sock", authBadSecret, "GET /v1/status") {
			if len(entries) > 0 && e.Time.Sub(entries[len(entries)-1].Time) < authAuditEvery {
				t.Fatalf("entries at %s and %s, less than %s apart", entries[len(entries)-1].Time, e.Time, authAuditEvery)
			}
			entries = append(entries, e)
		}
	}
	entries = append(entries, a.flush(start.Add(n*time.Second), true)...)
	total := 0
	for _, e := range entries {
		total += e.Count
	}
	if total != n || len(entries) > n/60+2 {
		t.Fatalf("%d entries counting %d, want at most %d counting %d", len(entries), total, n/60+2, n)
	}
}

func TestRequestSource(t *testing.T) {
	s := &Server{opts: Options{SocketPath: "/run/meshward/admin.sock"}}
	r := httptest.NewRequest("GET", "/v1/status", nil)
	r.RemoteAddr = "203.0.113.9:4444"
	if got := s.requestSource(r); got != "tcp:203.0.113.9" {
		t.Fatalf("tcp source %q", got)
	}
	r.RemoteAddr = "[2001:db8::1]:4444"
	if got := s.requestSource(r); got != "tcp:2001:db8::1" {
		t.Fatalf("tcp6 source %q", got)
	}
}
