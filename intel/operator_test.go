package intel

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func operatorBody(t *testing.T, h OperatorHeader) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"header": h, "op": "block", "indicator": "203.0.113.7"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOperatorSignVerify(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	h := OperatorHeader{Mesh: "mesh-1", Nonce: strings.Repeat("ab", 16), Issued: now, Expires: now.Add(5 * time.Minute)}
	s := SignOperator(priv, operatorBody(t, h))
	if err := s.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	got, err := s.Header()
	if err != nil || got.Mesh != "mesh-1" || !got.Issued.Equal(now) {
		t.Fatalf("Header = %+v, %v", got, err)
	}
	if !strings.HasPrefix(s.KeyID(), "op:") || len(s.KeyID()) != 19 {
		t.Errorf("KeyID = %q", s.KeyID())
	}

	tampered := s
	tampered.Body = append([]byte(nil), s.Body...)
	tampered.Body[len(tampered.Body)-3] ^= 1
	if err := tampered.Verify(); !errors.Is(err, ErrOperatorSignature) {
		t.Errorf("tampered body: %v, want ErrOperatorSignature", err)
	}
	// A signature made without the operator domain (an envelope-style or
	// raw signature with the same key) does not verify.
	raw := s
	raw.Sig = ed25519.Sign(priv, s.Body)
	if err := raw.Verify(); !errors.Is(err, ErrOperatorSignature) {
		t.Errorf("signature without the domain: %v, want ErrOperatorSignature", err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	swapped := s
	swapped.Key = other.Public().(ed25519.PublicKey)
	if err := swapped.Verify(); !errors.Is(err, ErrOperatorSignature) {
		t.Errorf("other key: %v, want ErrOperatorSignature", err)
	}
	for name, bad := range map[string]OperatorSigned{
		"short key": {Key: s.Key[:5], Body: s.Body, Sig: s.Sig},
		"short sig": {Key: s.Key, Body: s.Body, Sig: s.Sig[:10]},
		"no body":   {Key: s.Key, Sig: s.Sig},
		"huge body": {Key: s.Key, Body: make([]byte, MaxOperatorBody+1), Sig: s.Sig},
	} {
		if err := bad.Verify(); !errors.Is(err, ErrOperatorMalformed) {
			t.Errorf("%s: %v, want ErrOperatorMalformed", name, err)
		}
	}
}

func TestOperatorHeaderRules(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ok := OperatorHeader{Mesh: "m", Nonce: strings.Repeat("0f", 16), Issued: now, Expires: now.Add(time.Minute)}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]OperatorHeader{
		"no mesh":      {Nonce: ok.Nonce, Issued: now, Expires: ok.Expires},
		"short nonce":  {Mesh: "m", Nonce: "abcd", Issued: now, Expires: ok.Expires},
		"not hex":      {Mesh: "m", Nonce: strings.Repeat("zz", 16), Issued: now, Expires: ok.Expires},
		"no issued":    {Mesh: "m", Nonce: ok.Nonce, Expires: ok.Expires},
		"backwards":    {Mesh: "m", Nonce: ok.Nonce, Issued: now, Expires: now.Add(-time.Second)},
		"too long":     {Mesh: "m", Nonce: ok.Nonce, Issued: now, Expires: now.Add(MaxOperatorCommandLife + time.Second)},
		"mesh too big": {Mesh: strings.Repeat("m", 129), Nonce: ok.Nonce, Issued: now, Expires: ok.Expires},
	} {
		if err := h.Validate(); !errors.Is(err, ErrOperatorMalformed) {
			t.Errorf("%s: %v, want ErrOperatorMalformed", name, err)
		}
	}
	if err := ok.ValidAt(now.Add(30*time.Second), time.Second); err != nil {
		t.Errorf("inside its life: %v", err)
	}
	if err := ok.ValidAt(now.Add(time.Minute), time.Second); err == nil {
		t.Error("at expiry: accepted")
	}
	if err := ok.ValidAt(now.Add(-2*time.Second), time.Second); err == nil {
		t.Error("issued in the future beyond skew: accepted")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	noHeader := SignOperator(priv, []byte(`{"op":"block"}`))
	if _, err := noHeader.Header(); !errors.Is(err, ErrOperatorMalformed) {
		t.Errorf("body without header: %v", err)
	}
}

func TestOperatorPublicKeyText(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	s := FormatOperatorPublicKey(pub) + " alice@soc"
	got, err := ParseOperatorPublicKey(s)
	if err != nil || !got.Equal(pub) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for _, bad := range []string{"", "ssh-ed25519 AAAA", "meshward-operator-ed25519 !!!", "meshward-operator-ed25519 AAAA"} {
		if _, err := ParseOperatorPublicKey(bad); err == nil {
			t.Errorf("ParseOperatorPublicKey(%q) accepted", bad)
		}
	}
}
