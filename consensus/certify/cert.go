package certify

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"

	"github.com/meshward/meshward/intel"
)

// CertDomain separates certificate signatures from every other signature
// made with a node key (envelopes, join proofs, leaves, manifests).
const CertDomain = "meshward/certify/cert/v1\x00"

// MaxMeshID bounds a mesh ID on the wire.
const MaxMeshID = 64

// Cert is one voter's statement that, in mesh Mesh, the chain entry at
// Index has term Term and the chain hash there is Hash.
type Cert struct {
	Mesh   string
	Index  uint64
	Term   uint64
	Hash   Hash
	Signer ed25519.PublicKey // the voter's node key
	Sig    []byte
}

// SignerID is the node ID of the signer's key ("" if the key is not 32
// bytes).
func (c *Cert) SignerID() string { return intel.NodeID(c.Signer) }

// certMessage is what a voter signs.
func certMessage(mesh string, index, term uint64, h Hash) []byte {
	b := make([]byte, 0, len(CertDomain)+1+len(mesh)+16+len(h))
	b = append(b, CertDomain...)
	b = append(b, byte(len(mesh)))
	b = append(b, mesh...)
	b = binary.BigEndian.AppendUint64(b, index)
	b = binary.BigEndian.AppendUint64(b, term)
	return append(b, h[:]...)
}

// SignCert makes priv's certificate for the chain entry at index.
func SignCert(priv ed25519.PrivateKey, mesh string, index, term uint64, h Hash) (Cert, error) {
	if len(mesh) == 0 || len(mesh) > MaxMeshID {
		return Cert{}, fmt.Errorf("sign certificate: mesh ID of %d bytes, want 1 to %d", len(mesh), MaxMeshID)
	}
	if len(priv) != ed25519.PrivateKeySize {
		return Cert{}, fmt.Errorf("sign certificate: key of %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	return Cert{
		Mesh: mesh, Index: index, Term: term, Hash: h,
		Signer: priv.Public().(ed25519.PublicKey),
		Sig:    ed25519.Sign(priv, certMessage(mesh, index, term, h)),
	}, nil
}

// Verify checks the signature against the signer's key.
func (c *Cert) Verify() bool {
	return len(c.Signer) == ed25519.PublicKeySize && len(c.Sig) == ed25519.SignatureSize &&
		intel.VerifySignature(c.Signer, certMessage(c.Mesh, c.Index, c.Term, c.Hash), c.Sig)
}

// Cert wire format, version 1 (big endian), m = mesh ID length:
//
//	0     1   version (1)
//	1     1   m
//	2     m   mesh ID
//	2+m   8   index
//	10+m  8   term
//	18+m  32  chain hash
//	50+m  32  signer's ed25519 public key
//	82+m  64  signature over CertDomain || bytes[1:50+m]
const certVersion = 1

// CertSize is the encoded size of a certificate for a mesh ID of m bytes.
func CertSize(m int) int { return 146 + m }

// MarshalBinary encodes c.
func (c *Cert) MarshalBinary() ([]byte, error) {
	if len(c.Mesh) == 0 || len(c.Mesh) > MaxMeshID || len(c.Signer) != ed25519.PublicKeySize || len(c.Sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("certificate: mesh ID %d bytes, key %d, signature %d", len(c.Mesh), len(c.Signer), len(c.Sig))
	}
	b := make([]byte, 0, CertSize(len(c.Mesh)))
	b = append(b, certVersion, byte(len(c.Mesh)))
	b = append(b, c.Mesh...)
	b = binary.BigEndian.AppendUint64(b, c.Index)
	b = binary.BigEndian.AppendUint64(b, c.Term)
	b = append(b, c.Hash[:]...)
	b = append(b, c.Signer...)
	return append(b, c.Sig...), nil
}

// UnmarshalBinary decodes a certificate (the signature is not checked);
// the error names the field at fault.
func (c *Cert) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("certificate: %d bytes", len(b))
	}
	if b[0] != certVersion {
		return fmt.Errorf("certificate: version %d at byte 0, want %d", b[0], certVersion)
	}
	m := int(b[1])
	if m == 0 || m > MaxMeshID {
		return fmt.Errorf("certificate: mesh ID length %d at byte 1, want 1 to %d", m, MaxMeshID)
	}
	if len(b) != CertSize(m) {
		return fmt.Errorf("certificate: %d bytes, want %d for a mesh ID of %d", len(b), CertSize(m), m)
	}
	d := Cert{
		Mesh:   string(b[2 : 2+m]),
		Index:  binary.BigEndian.Uint64(b[2+m:]),
		Term:   binary.BigEndian.Uint64(b[10+m:]),
		Signer: ed25519.PublicKey(append([]byte(nil), b[50+m:82+m]...)),
		Sig:    append([]byte(nil), b[82+m:]...),
	}
	copy(d.Hash[:], b[18+m:50+m])
	if d.Index == 0 {
		return fmt.Errorf("certificate: index 0 at byte %d", 2+m)
	}
	*c = d
	return nil
}
