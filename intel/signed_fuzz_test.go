package intel

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// signRaw lays out an envelope with arbitrary header fields, declared as
// its payload length, and signs it with k the way Seal does, so that Open
// gets past the signature check whenever the layout is consistent.
func signRaw(k ed25519.PrivateKey, version, kind uint8, seq uint64, ts int64, declared uint32, payload []byte) []byte {
	b := make([]byte, headerSize+len(payload), headerSize+len(payload)+sigSize)
	b[0], b[1] = version, kind
	copy(b[2:34], k.Public().(ed25519.PublicKey))
	binary.BigEndian.PutUint64(b[34:42], seq)
	binary.BigEndian.PutUint64(b[42:50], uint64(ts))
	binary.BigEndian.PutUint32(b[50:54], declared)
	copy(b[headerSize:], payload)
	return append(b, ed25519.Sign(k, signedBytes(b))...)
}

// FuzzSignedEnvelope fuzzes the payload and the header fields of envelopes
// carrying a valid signature, which FuzzOpen can almost never forge, so
// that the accept path of Open and the payload decoders behind it are
// explored. Open must accept exactly the consistent envelopes; what a
// decoder accepts must validate and survive a re-encoding unchanged.
func FuzzSignedEnvelope(f *testing.F) {
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	ts := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC).UnixNano()
	sighting, _ := json.Marshal(testSighting())
	report, _ := json.Marshal(testReport())
	for _, p := range [][]byte{
		sighting, report,
		[]byte(`{"indicator":{"type":"ipv6","value":"2001:db8::1"},"detector":"port-scan","confidence":0,"count":1,"first_seen":"2026-01-01T00:00:00+01:00","last_seen":"2026-01-01T00:00:00+01:00"}`),
		[]byte(`{"indicator":{"type":"domain","value":"c2.example.net"},"source":"feed","confidence":1,"valid_from":"2026-01-01T00:00:00.5Z"}`),
		[]byte(`{"indicator":{"type":"ipv4","value":"203.0.113.7"},"detector":"x","count":1,"first_seen":"2026-01-01T00:00:00Z","last_seen":"2026-01-01T00:00:00Z","extra":1}`),
		[]byte(`{"detector":"x"} {}`),
		[]byte(`null`), []byte(`{}`), {},
	} {
		for _, kind := range []Kind{KindSighting, KindIndicator} {
			f.Add(uint8(Version), uint8(kind), uint64(1), ts, int8(0), p)
		}
	}
	f.Add(uint8(Version), uint8(KindHeartbeat), uint64(9), int64(-1), int8(0), []byte(`{}`))
	f.Add(uint8(2), uint8(KindSighting), uint64(1), ts, int8(0), sighting)
	f.Add(uint8(Version), uint8(0), uint64(1), ts, int8(0), sighting)
	f.Add(uint8(Version), uint8(4), uint64(1), ts, int8(0), sighting)
	f.Add(uint8(Version), uint8(KindSighting), uint64(0), ts, int8(0), sighting)
	f.Add(uint8(Version), uint8(KindSighting), uint64(1), ts, int8(1), sighting)
	f.Add(uint8(Version), uint8(KindSighting), uint64(1), ts, int8(-1), sighting)
	pub := k.Public().(ed25519.PublicKey)

	f.Fuzz(func(t *testing.T, version, kind uint8, seq uint64, ts int64, lenDelta int8, payload []byte) {
		declared := uint32(len(payload)) + uint32(int32(lenDelta))
		b := signRaw(k, version, kind, seq, ts, declared, payload)
		consistent := len(b) <= MaxEnvelopeSize && version == Version && Kind(kind).known() && seq != 0 && lenDelta == 0
		e, err := Open(b)
		if (err == nil) != consistent {
			t.Fatalf("Open(version %d, kind %d, seq %d, length %+d, %d payload bytes) = %v, want accepted %v",
				version, kind, seq, lenDelta, len(payload), err, consistent)
		}
		if err != nil {
			if e != nil {
				t.Fatal("an envelope returned with an error")
			}
			if errors.Is(err, ErrBadSignature) {
				t.Fatalf("a validly signed envelope refused for its signature: %v", err)
			}
			return
		}
		if e.Version != version || e.Kind != Kind(kind) || e.Seq != seq || e.Time.UnixNano() != ts ||
			!bytes.Equal(e.Origin, pub) || !bytes.Equal(e.Payload, payload) || !bytes.Equal(e.Raw, b) || e.OriginID() != NodeID(pub) {
			t.Fatalf("opened header %+v does not match what was signed", e)
		}
		// Seal lays out the same bytes.
		if sealed, err := Seal(k, Kind(kind), seq, time.Unix(0, ts), payload); err != nil || !bytes.Equal(sealed, b) {
			t.Fatalf("Seal of the same fields = %x, %v; want the opened bytes", sealed, err)
		}

		s, serr := DecodeSighting(e)
		r, rerr := DecodeIndicatorReport(e)
		for _, err := range []error{serr, rerr} {
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error %v does not wrap ErrMalformed", err)
			}
		}
		if (serr == nil && e.Kind != KindSighting) || (rerr == nil && e.Kind != KindIndicator) {
			t.Fatalf("a %s decoded as another kind", e.Kind)
		}
		if serr == nil {
			if err := s.Validate(); err != nil {
				t.Fatalf("accepted sighting does not validate: %v", err)
			}
			roundTrip(t, k, KindSighting, s, func(e *Envelope) (any, error) { return DecodeSighting(e) })
		}
		if rerr == nil {
			if err := r.Validate(); err != nil {
				t.Fatalf("accepted report does not validate: %v", err)
			}
			roundTrip(t, k, KindIndicator, r, func(e *Envelope) (any, error) { return DecodeIndicatorReport(e) })
		}
	})
}

// roundTrip checks that v, re-encoded, sealed, opened and decoded, encodes
// to the same bytes again.
func roundTrip(t *testing.T, k ed25519.PrivateKey, kind Kind, v any, decode func(*Envelope) (any, error)) {
	t.Helper()
	first, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("accepted %s cannot be encoded: %v", kind, err)
	}
	b, err := Seal(k, kind, 1, time.Unix(0, 1), first)
	if err != nil {
		t.Fatalf("accepted %s cannot be sealed: %v", kind, err)
	}
	e, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := decode(e)
	if err != nil {
		t.Fatalf("re-encoded %s %s refused: %v", kind, first, err)
	}
	second, err := json.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("%s not stable across a round trip:\n%s\n%s", kind, first, second)
	}
}
