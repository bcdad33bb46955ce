package intel

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Operator commands are the mesh-wide changes a person decides (block,
// allow, revoke, protect, remove a member, create a join token, change the
// rules of corroboration, manage operator keys). They are signed on the
// operator's side with an ed25519 key that the FSM knows, never with a node
// key: a compromised node can forward an operator's command but cannot make
// one.

// OperatorSigningDomain is prepended to the signed bytes of an operator
// command, so that an operator signature can never be taken for an envelope
// signature or anything else signed with the same key, and no node key's
// signature can pass as an operator's.
const OperatorSigningDomain = "meshward/operator/v1\x00"

// Operator command limits.
const (
	// MaxOperatorBody bounds the signed body of an operator command: room
	// for a bulk command of MaxBulkIndicators addresses, while the
	// command's log entry (the body in base64, in JSON) stays under the
	// 256 KiB Raft entry limit.
	MaxOperatorBody = 160 << 10
	// MaxOperatorCommandLife bounds how long after it was issued a signed
	// command may still be committed; with nonces remembered for that
	// long, a captured command cannot be replayed later.
	MaxOperatorCommandLife = 15 * time.Minute
)

// Errors of operator signatures.
var (
	ErrOperatorSignature = errors.New("operator signature invalid")
	ErrOperatorMalformed = errors.New("operator command malformed")
)

// OperatorRole bounds what an operator key may sign.
type OperatorRole string

// Operator roles: a responder blocks and allows within a TTL cap; an admin
// may do everything.
const (
	OperatorResponder OperatorRole = "responder"
	OperatorAdmin     OperatorRole = "admin"
)

// Valid reports whether r is a known role.
func (r OperatorRole) Valid() bool { return r == OperatorResponder || r == OperatorAdmin }

// OperatorKeyID is the short, stable name of an operator public key:
// "op:" and the first 16 hex digits of its SHA-256.
func OperatorKeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return "op:" + hex.EncodeToString(h[:8])
}

// OperatorHeader binds a signed command to one mesh and one moment, and
// makes it unique: the FSM refuses a command for another mesh, one past its
// expiry at the log entry's time, and a nonce it has seen.
type OperatorHeader struct {
	// Mesh is the ID of the mesh the command is meant for.
	Mesh string `json:"mesh"`
	// Nonce is 16 random bytes, hex; never accepted twice.
	Nonce string `json:"nonce"`
	// Issued and Expires bound when the command may be committed;
	// Expires is at most Issued + MaxOperatorCommandLife.
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
}

// Validate checks the header's fields alone.
func (h OperatorHeader) Validate() error {
	if h.Mesh == "" || len(h.Mesh) > 128 {
		return fmt.Errorf("%w: mesh must be 1 to 128 bytes", ErrOperatorMalformed)
	}
	if b, err := hex.DecodeString(h.Nonce); err != nil || len(b) != 16 {
		return fmt.Errorf("%w: nonce must be 32 hex digits", ErrOperatorMalformed)
	}
	if h.Issued.IsZero() || !h.Expires.After(h.Issued) {
		return fmt.Errorf("%w: expires must be after issued", ErrOperatorMalformed)
	}
	if h.Expires.Sub(h.Issued) > MaxOperatorCommandLife {
		return fmt.Errorf("%w: a command may live at most %s (issued %s, expires %s)", ErrOperatorMalformed,
			MaxOperatorCommandLife, h.Issued.UTC().Format(time.RFC3339), h.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// ValidAt reports whether a command with this header may be committed at
// t (the log entry's time): not before it was issued (with skew), not after
// it expires.
func (h OperatorHeader) ValidAt(t time.Time, skew time.Duration) error {
	if t.Before(h.Issued.Add(-skew)) {
		return fmt.Errorf("%w: issued %s is in the future at %s", ErrOperatorMalformed,
			h.Issued.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	if !t.Before(h.Expires) {
		return fmt.Errorf("%w: expired at %s (now %s)", ErrOperatorMalformed,
			h.Expires.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	return nil
}

// OperatorSigned is a signed operator command: the exact bytes signed, the
// key that signed them and the signature. Body is JSON whose "header"
// field is an OperatorHeader; the rest is the command (its schema belongs
// to the consensus package).
type OperatorSigned struct {
	Key  []byte `json:"key"`
	Body []byte `json:"body"`
	Sig  []byte `json:"sig"`
}

// SignOperator signs body with an operator's private key.
func SignOperator(priv ed25519.PrivateKey, body []byte) OperatorSigned {
	msg := make([]byte, 0, len(OperatorSigningDomain)+len(body))
	msg = append(append(msg, OperatorSigningDomain...), body...)
	return OperatorSigned{
		Key:  append([]byte(nil), priv.Public().(ed25519.PublicKey)...),
		Body: append([]byte(nil), body...),
		Sig:  ed25519.Sign(priv, msg),
	}
}

// Verify checks the sizes and the signature. It says nothing of whether the
// key is an operator's: the caller looks KeyID up in its operator set.
func (s OperatorSigned) Verify() error {
	if len(s.Key) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: key is %d bytes, want %d", ErrOperatorMalformed, len(s.Key), ed25519.PublicKeySize)
	}
	if len(s.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature is %d bytes, want %d", ErrOperatorMalformed, len(s.Sig), ed25519.SignatureSize)
	}
	if len(s.Body) == 0 || len(s.Body) > MaxOperatorBody {
		return fmt.Errorf("%w: body is %d bytes, want 1 to %d", ErrOperatorMalformed, len(s.Body), MaxOperatorBody)
	}
	msg := make([]byte, 0, len(OperatorSigningDomain)+len(s.Body))
	msg = append(append(msg, OperatorSigningDomain...), s.Body...)
	if !ed25519.Verify(ed25519.PublicKey(s.Key), msg, s.Sig) {
		return ErrOperatorSignature
	}
	return nil
}

// KeyID is OperatorKeyID of the signing key.
func (s OperatorSigned) KeyID() string { return OperatorKeyID(ed25519.PublicKey(s.Key)) }

// Header decodes the body's header (after Verify).
func (s OperatorSigned) Header() (OperatorHeader, error) {
	var b struct {
		Header *OperatorHeader `json:"header"`
	}
	if err := json.Unmarshal(s.Body, &b); err != nil {
		return OperatorHeader{}, fmt.Errorf("%w: body: %v", ErrOperatorMalformed, err)
	}
	if b.Header == nil {
		return OperatorHeader{}, fmt.Errorf("%w: body has no header", ErrOperatorMalformed)
	}
	if err := b.Header.Validate(); err != nil {
		return OperatorHeader{}, err
	}
	return *b.Header, nil
}

// Operator public keys travel as text: "meshward-operator-ed25519 <base64
// key>", the form `meshward operator add` takes and `operator keygen`
// prints.
const operatorPubPrefix = "meshward-operator-ed25519 "

// FormatOperatorPublicKey returns the text form of an operator public key.
func FormatOperatorPublicKey(pub ed25519.PublicKey) string {
	return operatorPubPrefix + base64.StdEncoding.EncodeToString(pub)
}

// ParseOperatorPublicKey reads the text form of an operator public key
// (anything after the key, such as a comment, is ignored).
func ParseOperatorPublicKey(s string) (ed25519.PublicKey, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), operatorPubPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: operator public key must start with %q", ErrOperatorMalformed, strings.TrimSpace(operatorPubPrefix))
	}
	field, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	b, err := base64.StdEncoding.DecodeString(field)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: operator public key is not %d base64-encoded bytes", ErrOperatorMalformed, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}
