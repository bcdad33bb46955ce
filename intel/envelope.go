package intel

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Envelope decoding errors. Each rejection wraps exactly one of them, so a
// validator can count rejections by reason.
var (
	ErrOversized      = errors.New("envelope oversized")
	ErrMalformed      = errors.New("envelope malformed")
	ErrUnknownVersion = errors.New("envelope version unknown")
	ErrBadSignature   = errors.New("envelope signature invalid")
)

// Version is the envelope format this package writes.
const Version = 1

// MaxEnvelopeSize bounds an encoded envelope, header and signature included.
const MaxEnvelopeSize = 64 << 10

// SigningDomain is prepended to the signed bytes so that an envelope
// signature can never be replayed as a signature of anything else made with
// the same node key (libp2p handshakes, pubsub messages).
const SigningDomain = "meshward/envelope/v1\x00"

// Kind says what an envelope's payload is.
type Kind uint8

// Envelope kinds.
const (
	KindSighting  Kind = 1
	KindIndicator Kind = 2
	KindHeartbeat Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindSighting:
		return "sighting"
	case KindIndicator:
		return "indicator"
	case KindHeartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) known() bool { return k >= KindSighting && k <= KindHeartbeat }

// Wire layout, all integers big-endian:
//
//	off  size  field
//	0    1     version
//	1    1     kind
//	2    32    origin ed25519 public key
//	34   8     sequence number (per origin, starts at 1)
//	42   8     timestamp, Unix nanoseconds
//	50   4     payload length n
//	54   n     payload (JSON)
//	54+n 64    ed25519 signature over SigningDomain || bytes[0:54+n]
const (
	headerSize = 54
	sigSize    = ed25519.SignatureSize
	// MaxPayloadSize is the largest payload an envelope can carry.
	MaxPayloadSize = MaxEnvelopeSize - headerSize - sigSize
)

// Envelope is a decoded, signature-checked message from one node.
type Envelope struct {
	Version uint8
	Kind    Kind
	Origin  ed25519.PublicKey
	Seq     uint64
	Time    time.Time
	Payload []byte
	// Raw holds the exact bytes that were signed and sent; relay these,
	// never a re-encoding.
	Raw []byte

	// origin and sighting, set by a VerifyCache only, are what OriginID
	// and DecodeSighting return for these exact bytes, remembered from
	// when they were first opened: the signer's node ID, and the decoded,
	// validated sighting (never mutated; callers get copies).
	origin   string
	sighting *Sighting
}

// OriginID is the node ID (libp2p peer ID string) of the signer.
func (e *Envelope) OriginID() string {
	if e.origin != "" {
		return e.origin
	}
	return NodeID(e.Origin)
}

// Seal encodes and signs an envelope. seq must be at least 1.
func Seal(key ed25519.PrivateKey, kind Kind, seq uint64, ts time.Time, payload []byte) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("seal: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if !kind.known() {
		return nil, fmt.Errorf("seal: %w: %s", ErrMalformed, kind)
	}
	if seq == 0 {
		return nil, fmt.Errorf("seal: %w: sequence number 0", ErrMalformed)
	}
	if len(payload) > MaxPayloadSize {
		return nil, fmt.Errorf("seal: %w: payload %d bytes, limit %d", ErrOversized, len(payload), MaxPayloadSize)
	}
	b := make([]byte, headerSize+len(payload), headerSize+len(payload)+sigSize)
	b[0] = Version
	b[1] = byte(kind)
	copy(b[2:34], key.Public().(ed25519.PublicKey))
	binary.BigEndian.PutUint64(b[34:42], seq)
	binary.BigEndian.PutUint64(b[42:50], uint64(ts.UnixNano()))
	binary.BigEndian.PutUint32(b[50:54], uint32(len(payload)))
	copy(b[headerSize:], payload)
	sig := ed25519.Sign(key, signedBytes(b))
	return append(b, sig...), nil
}

// SealJSON marshals v as the payload and seals it.
func SealJSON(key ed25519.PrivateKey, kind Kind, seq uint64, ts time.Time, v any) ([]byte, error) {
	p, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("seal: marshal %s: %w", kind, err)
	}
	return Seal(key, kind, seq, ts, p)
}

// Open decodes b and verifies its signature. It rejects, in this order,
// oversized input (ErrOversized), input too short or inconsistent
// (ErrMalformed), an unknown version (ErrUnknownVersion), an unknown kind
// (ErrMalformed) and a bad signature (ErrBadSignature). The returned
// envelope's Raw and Payload alias b.
func Open(b []byte) (*Envelope, error) {
	e, err := parse(b)
	if err != nil {
		return nil, err
	}
	if !e.verify() {
		return nil, ErrBadSignature
	}
	return e, nil
}

// parse makes every check of Open but the signature's, in Open's order,
// and returns the envelope whose signature is still to be verified.
func parse(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrOversized, len(b), MaxEnvelopeSize)
	}
	if len(b) < headerSize+sigSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte minimum", ErrMalformed, len(b), headerSize+sigSize)
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w: %d (this node reads %d)", ErrUnknownVersion, b[0], Version)
	}
	kind := Kind(b[1])
	if !kind.known() {
		return nil, fmt.Errorf("%w: unknown %s", ErrMalformed, kind)
	}
	n := binary.BigEndian.Uint32(b[50:54])
	if uint64(n) != uint64(len(b)-headerSize-sigSize) {
		return nil, fmt.Errorf("%w: payload length %d does not match the %d bytes present", ErrMalformed, n, len(b)-headerSize-sigSize)
	}
	seq := binary.BigEndian.Uint64(b[34:42])
	if seq == 0 {
		return nil, fmt.Errorf("%w: sequence number 0", ErrMalformed)
	}
	return &Envelope{
		Version: b[0],
		Kind:    kind,
		Origin:  ed25519.PublicKey(b[2:34]),
		Seq:     seq,
		Time:    time.Unix(0, int64(binary.BigEndian.Uint64(b[42:50]))).UTC(),
		Payload: b[headerSize : headerSize+int(n)],
		Raw:     b,
	}, nil
}

// verify checks the signature of an envelope from parse over
// SigningDomain and the bytes before it.
func (e *Envelope) verify() bool {
	n := len(e.Raw) - sigSize
	return ed25519.Verify(e.Origin, signedBytes(e.Raw[:n]), e.Raw[n:])
}

func signedBytes(body []byte) []byte {
	m := make([]byte, 0, len(SigningDomain)+len(body))
	m = append(m, SigningDomain...)
	return append(m, body...)
}

// DecodeSighting decodes and validates the sighting an envelope carries.
// Unknown JSON fields are rejected; every error wraps ErrMalformed. An
// envelope from a VerifyCache may carry the sighting decoded when its
// bytes were first opened: a copy of it is returned.
func DecodeSighting(e *Envelope) (Sighting, error) {
	if e.sighting != nil {
		return *e.sighting, nil
	}
	var s Sighting
	if e.Kind != KindSighting {
		return s, fmt.Errorf("%w: envelope carries a %s, not a sighting", ErrMalformed, e.Kind)
	}
	if !decodeSightingFast(e.Payload, &s) {
		s = Sighting{}
		if err := decodeStrict(e.Payload, &s); err != nil {
			return s, fmt.Errorf("%w: sighting payload: %w", ErrMalformed, err)
		}
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, nil
}

func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after JSON value")
	}
	return nil
}
