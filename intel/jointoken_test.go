package intel

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

func TestJoinTokenProof(t *testing.T) {
	secret, pub, err := NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) < MinJoinTokenSecret || !strings.HasPrefix(secret, "mwjoin_") {
		t.Fatalf("secret %q", secret)
	}
	priv, err := JoinTokenKey(secret)
	if err != nil || !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Fatalf("JoinTokenKey does not give the token's key: %v", err)
	}
	sig := SignJoin(priv, "mesh-1", "node-a")
	if err := VerifyJoin(pub, "mesh-1", "node-a", sig); err != nil {
		t.Fatalf("VerifyJoin: %v", err)
	}
	for name, tc := range map[string][2]string{"other node": {"mesh-1", "node-b"}, "other mesh": {"mesh-2", "node-a"}} {
		if err := VerifyJoin(pub, tc[0], tc[1], sig); !errors.Is(err, ErrJoinToken) {
			t.Errorf("%s: %v, want ErrJoinToken", name, err)
		}
	}
	if err := VerifyJoin(pub, "mesh-1", "node-a", sig[:10]); !errors.Is(err, ErrJoinToken) {
		t.Errorf("short signature: %v", err)
	}
	if _, err := JoinTokenKey(strings.Repeat("x", MinJoinTokenSecret-1)); !errors.Is(err, ErrJoinToken) {
		t.Errorf("short secret: %v", err)
	}
	if id := JoinTokenID(pub); !strings.HasPrefix(id, "jt:") || len(id) != 19 {
		t.Errorf("JoinTokenID = %q", id)
	}
}
