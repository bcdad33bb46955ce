package admin

import (
	"errors"
	"testing"
	"time"
)

// TestSessionsBounded: at the bound, expired sessions go first, then the
// least recently used one; a session ID is 256 random bits, unique.
func TestSessionsBounded(t *testing.T) {
	ss := newSessions(SessionOptions{MaxAge: time.Hour, Idle: 10 * time.Minute, Max: 2})
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	a, _, ev, err := ss.create("tok-a", t0)
	if err != nil || ev != 0 || len(a) != 2*sessionIDBytes {
		t.Fatalf("create: %q %d %v", a, ev, err)
	}
	b, _, _, _ := ss.create("tok-b", t0.Add(time.Minute))
	if _, err := ss.use(a, t0.Add(2*time.Minute)); err != nil { // a is now the most recently used
		t.Fatal(err)
	}
	c, _, ev, _ := ss.create("tok-c", t0.Add(3*time.Minute))
	if ev != 1 || ss.len() != 2 {
		t.Fatalf("create at the bound: evicted %d, held %d", ev, ss.len())
	}
	if _, err := ss.use(b, t0.Add(3*time.Minute)); !errors.Is(err, errNoSession) {
		t.Fatalf("the least recently used session: %v, want ended", err)
	}
	for _, k := range []string{a, c} {
		if _, err := ss.use(k, t0.Add(4*time.Minute)); err != nil {
			t.Fatalf("a kept session: %v", err)
		}
	}
	// Expired sessions make room before any live one is ended.
	d, _, ev, _ := ss.create("tok-d", t0.Add(20*time.Minute))
	if ev != 0 || ss.len() != 1 {
		t.Fatalf("create with both others idle: evicted %d, held %d", ev, ss.len())
	}
	if n := ss.endToken("tok-d"); n != 1 {
		t.Fatalf("endToken ended %d", n)
	}
	if _, err := ss.use(d, t0.Add(20*time.Minute)); !errors.Is(err, errNoSession) {
		t.Fatalf("session of an ended token: %v", err)
	}
	seen := map[string]bool{}
	for range 1000 {
		k, _, _, _ := ss.create("x", t0)
		if seen[k] {
			t.Fatal("a session ID repeated")
		}
		seen[k] = true
	}
}
