package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAcks(t *testing.T) {
	for _, o := range openers() {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			at := time.Unix(1000, 0).UTC()
			a := AckRecord{Detection: "d1", By: "oncall", TokenID: "00aa", Note: "handled", At: at}
			if err := s.CreateAck(a); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateAck(AckRecord{Detection: "d1", By: "other", At: at}); !errors.Is(err, ErrExists) {
				t.Fatalf("second ack: %v, want ErrExists", err)
			}
			got, err := s.Ack("d1")
			if err != nil || got != a {
				t.Fatalf("Ack: %+v, %v, want the first ack", got, err)
			}
			if _, err := s.Ack("d2"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing ack: %v, want ErrNotFound", err)
			}
			if err := s.CreateAck(AckRecord{Detection: "d0", By: "b", At: at.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			m, err := s.AcksFor([]string{"d0", "d2", "", strings.Repeat("x", MaxAckIDLen+1), "d1"})
			if err != nil || len(m) != 2 || m["d1"] != a || m["d0"].By != "b" {
				t.Fatalf("AcksFor: %+v, %v", m, err)
			}
			if _, err := s.AcksFor(make([]string, MaxAckLookup+1)); err == nil {
				t.Fatal("AcksFor accepted too many ids")
			}
			as, err := s.Acks(0)
			if err != nil || len(as) != 2 || as[0].Detection != "d0" || as[1].Detection != "d1" {
				t.Fatalf("Acks: %+v, %v", as, err)
			}
			if as, _ := s.Acks(1); len(as) != 1 {
				t.Fatalf("Acks(1): %d", len(as))
			}
			if err := s.DeleteAck("d1"); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteAck("d1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
			if err := s.CreateAck(AckRecord{Detection: "d1", By: "other", At: at}); err != nil {
				t.Fatalf("ack after delete: %v", err)
			}
		})
	}
}

func TestAckValidation(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	at := time.Unix(1, 0)
	for _, a := range []AckRecord{
		{By: "b", At: at},
		{Detection: strings.Repeat("x", MaxAckIDLen+1), By: "b", At: at},
		{Detection: "d", At: at},
		{Detection: "d", By: "b"},
		{Detection: "d", By: "b", At: at, Note: strings.Repeat("n", MaxAckNoteLen+1)},
	} {
		if err := s.CreateAck(a); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
	if as, _ := s.Acks(0); len(as) != 0 {
		t.Fatalf("invalid acks stored: %+v", as)
	}
}

func TestPruneAcks(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	base := time.Unix(1000, 0)
	// More than one batch, old and new interleaved by ID.
	n := maxLazyDeletes*2 + 7
	for i := range n {
		at := base
		if i%2 == 1 {
			at = base.Add(time.Hour)
		}
		if err := s.CreateAck(AckRecord{Detection: fmt.Sprintf("d%06d", i), By: "b", At: at}); err != nil {
			t.Fatal(err)
		}
	}
	old := (n + 1) / 2
	got, err := s.PruneAcks(base.Add(time.Minute))
	if err != nil || got != old {
		t.Fatalf("PruneAcks: %d, %v, want %d", got, err, old)
	}
	as, err := s.Acks(0)
	if err != nil || len(as) != n-old {
		t.Fatalf("after prune: %d acks, %v, want %d", len(as), err, n-old)
	}
	for _, a := range as {
		if a.At.Before(base.Add(time.Minute)) {
			t.Fatalf("old ack %s kept", a.Detection)
		}
	}
}

// BenchmarkAcksFor measures what GET /v1/detections adds: one lookup of
// 100 detection IDs among 10000 acknowledgements.
func BenchmarkAcksFor(b *testing.B) {
	s := openStore(b, Options{InMemory: true})
	at := time.Unix(1000, 0)
	ids := make([]string, 0, 100)
	for i := range 10000 {
		id := fmt.Sprintf("%016x", i*7919)
		if err := s.CreateAck(AckRecord{Detection: id, By: "oncall", At: at}); err != nil {
			b.Fatal(err)
		}
		if i%200 == 0 { // half acknowledged, half not
			ids = append(ids, id, fmt.Sprintf("x%015x", i))
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.AcksFor(ids); err != nil {
			b.Fatal(err)
		}
	}
}
