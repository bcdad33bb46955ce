package store

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	for _, o := range openers() {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			rec := TokenRecord{ID: "00aa", Name: "ro", Role: "viewer", Hash: "ff", CreatedAt: time.Unix(1, 0).UTC()}
			if err := s.CreateToken(rec); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateToken(rec); !errors.Is(err, ErrExists) {
				t.Fatalf("duplicate: %v, want ErrExists", err)
			}
			got, err := s.Token("00aa")
			if err != nil || got != rec {
				t.Fatalf("Token: %+v, %v", got, err)
			}
			if _, err := s.Token("missing"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing: %v", err)
			}
			if ts, err := s.Tokens(); err != nil || len(ts) != 1 {
				t.Fatalf("Tokens: %v, %v", ts, err)
			}
			if err := s.DeleteToken("00aa"); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteToken("00aa"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
		})
	}
}

func TestAuditTrail(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	base := time.Unix(1000, 0)
	// Two entries share a timestamp; one is before 1970.
	times := []time.Time{base, base, base.Add(time.Second), time.Unix(-5, 0)}
	for i, at := range times {
		if err := s.AppendAudit(AuditEntry{Time: at, Actor: "a", Action: fmt.Sprint(i), Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.Audit(0)
	if err != nil {
		t.Fatal(err)
	}
	var order string
	for _, e := range es {
		order += e.Action
	}
	if order != "2103" {
		t.Fatalf("newest first: %q, want 2103", order)
	}
	if es, _ := s.Audit(2); len(es) != 2 {
		t.Fatalf("limit 2: %d entries", len(es))
	}
	n, err := s.PruneAudit(base.Add(time.Second))
	if err != nil || n != 3 {
		t.Fatalf("PruneAudit: %d, %v, want 3", n, err)
	}
	if es, _ := s.Audit(0); len(es) != 1 || es[0].Action != "2" {
		t.Fatalf("after prune: %+v", es)
	}
	if err := s.AppendAudit(AuditEntry{}); err == nil {
		t.Fatal("zero time accepted")
	}
}
