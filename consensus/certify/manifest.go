package certify

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// ManifestDomain separates snapshot manifest signatures from every other
// signature made with a node key.
const ManifestDomain = "meshward/certify/snapshot/v1\x00"

// Manifest describes a snapshot of the FSM state after the chain entry at
// Index: an edge that holds a majority's signatures over it, and bytes
// whose SHA-256 is State, may install them and continue from Index+1.
type Manifest struct {
	Mesh  string
	Index uint64 // the last chain entry the state includes
	Term  uint64
	Chain Hash // chain hash at Index
	// Voters is the voter set in force after Index (the configuration of
	// the last configuration entry up to Index).
	Voters Voters
	State  Hash   // SHA-256 of the snapshot bytes
	Size   uint64 // length of the snapshot bytes
	Sigs   []ManifestSig
}

// ManifestSig is one voter's signature over a manifest.
type ManifestSig struct {
	Signer ed25519.PublicKey
	Sig    []byte
}

// MaxSnapshotSize bounds the snapshot a manifest may describe.
const MaxSnapshotSize = 4 << 30

// NewManifest describes the snapshot bytes state taken at the chain head
// (index, term, chain) with the voters in force after index.
func NewManifest(mesh string, index, term uint64, chain Hash, voters Voters, state []byte) Manifest {
	return Manifest{Mesh: mesh, Index: index, Term: term, Chain: chain, Voters: voters,
		State: sha256.Sum256(state), Size: uint64(len(state))}
}

// body is the manifest without its signatures: what is signed, after
// ManifestDomain.
func (m *Manifest) body() ([]byte, error) {
	if len(m.Mesh) == 0 || len(m.Mesh) > MaxMeshID {
		return nil, fmt.Errorf("manifest: mesh ID of %d bytes, want 1 to %d", len(m.Mesh), MaxMeshID)
	}
	if len(m.Voters) == 0 || len(m.Voters) > MaxVoters {
		return nil, fmt.Errorf("manifest: %d voters, want 1 to %d", len(m.Voters), MaxVoters)
	}
	b := make([]byte, 0, 128+len(m.Voters)*56)
	b = append(b, manifestVersion, byte(len(m.Mesh)))
	b = append(b, m.Mesh...)
	b = binary.BigEndian.AppendUint64(b, m.Index)
	b = binary.BigEndian.AppendUint64(b, m.Term)
	b = append(b, m.Chain[:]...)
	b = append(b, m.State[:]...)
	b = binary.BigEndian.AppendUint64(b, m.Size)
	b = append(b, byte(len(m.Voters)))
	for i, v := range m.Voters {
		if len(v) == 0 || len(v) > 255 {
			return nil, fmt.Errorf("manifest: voter %d: ID of %d bytes", i, len(v))
		}
		b = append(b, byte(len(v)))
		b = append(b, v...)
	}
	return b, nil
}

// Sign adds priv's signature.
func (m *Manifest) Sign(priv ed25519.PrivateKey) error {
	body, err := m.body()
	if err != nil {
		return err
	}
	if len(m.Sigs) >= MaxVoters {
		return fmt.Errorf("manifest: already %d signatures", len(m.Sigs))
	}
	m.Sigs = append(m.Sigs, ManifestSig{
		Signer: priv.Public().(ed25519.PublicKey),
		Sig:    ed25519.Sign(priv, append([]byte(ManifestDomain), body...)),
	})
	return nil
}

// Manifest wire format, version 1 (big endian), m = mesh ID length:
//
//	1 version (1), 1 m, m mesh ID, 8 index, 8 term, 32 chain hash,
//	32 state hash, 8 size, 1 voter count v, v × (1 length, the ID),
//	then 1 signature count s, s × (32 public key, 64 signature), each
//	signature over ManifestDomain || the bytes before the signature count.
const manifestVersion = 1

// MarshalBinary encodes m with its signatures.
func (m *Manifest) MarshalBinary() ([]byte, error) {
	b, err := m.body()
	if err != nil {
		return nil, err
	}
	if len(m.Sigs) > MaxVoters {
		return nil, fmt.Errorf("manifest: %d signatures, limit %d", len(m.Sigs), MaxVoters)
	}
	b = append(b, byte(len(m.Sigs)))
	for i, s := range m.Sigs {
		if len(s.Signer) != ed25519.PublicKeySize || len(s.Sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("manifest: signature %d: key %d bytes, signature %d", i, len(s.Signer), len(s.Sig))
		}
		b = append(append(b, s.Signer...), s.Sig...)
	}
	return b, nil
}

// UnmarshalBinary decodes a manifest (signatures unchecked); the error
// names the field and the byte offset at fault.
func (m *Manifest) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	if v := r.byte("version"); r.err == nil && v != manifestVersion {
		return fmt.Errorf("manifest: version %d at byte 0, want %d", v, manifestVersion)
	}
	var d Manifest
	n := int(r.byte("mesh ID length"))
	if r.err == nil && (n == 0 || n > MaxMeshID) {
		return fmt.Errorf("manifest: mesh ID length %d at byte 1, want 1 to %d", n, MaxMeshID)
	}
	d.Mesh = string(r.bytes("mesh ID", n))
	d.Index = r.uint64("index")
	d.Term = r.uint64("term")
	copy(d.Chain[:], r.bytes("chain hash", 32))
	copy(d.State[:], r.bytes("state hash", 32))
	d.Size = r.uint64("size")
	nv := int(r.byte("voter count"))
	if r.err == nil && (nv == 0 || nv > MaxVoters) {
		return fmt.Errorf("manifest: voter count %d at byte %d, want 1 to %d", nv, r.off-1, MaxVoters)
	}
	for i := 0; i < nv && r.err == nil; i++ {
		l := int(r.byte("voter ID length"))
		if r.err == nil && l == 0 {
			return fmt.Errorf("manifest: voter %d: empty ID at byte %d", i, r.off-1)
		}
		d.Voters = append(d.Voters, string(r.bytes("voter ID", l)))
	}
	ns := int(r.byte("signature count"))
	if r.err == nil && ns > MaxVoters {
		return fmt.Errorf("manifest: signature count %d at byte %d, limit %d", ns, r.off-1, MaxVoters)
	}
	for i := 0; i < ns && r.err == nil; i++ {
		pub := append([]byte(nil), r.bytes("signer key", ed25519.PublicKeySize)...)
		sig := append([]byte(nil), r.bytes("signature", ed25519.SignatureSize)...)
		d.Sigs = append(d.Sigs, ManifestSig{Signer: pub, Sig: sig})
	}
	if r.err != nil {
		return r.err
	}
	if r.off != len(b) {
		return fmt.Errorf("manifest: %d bytes after the end at byte %d", len(b)-r.off, r.off)
	}
	if !NewVoters(d.Voters...).Equal(d.Voters) {
		return fmt.Errorf("manifest: voters are not sorted and distinct")
	}
	if d.Index == 0 || d.Size > MaxSnapshotSize {
		return fmt.Errorf("manifest: index %d, size %d (want index > 0, size ≤ %d)", d.Index, d.Size, uint64(MaxSnapshotSize))
	}
	*m = d
	return nil
}

// reader reads fields in order and keeps the first error.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) bytes(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.err = fmt.Errorf("manifest: %s: %d bytes at byte %d, %d left", field, n, r.off, len(r.b)-r.off)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) byte(field string) byte {
	if s := r.bytes(field, 1); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) uint64(field string) uint64 {
	if s := r.bytes(field, 8); s != nil {
		return binary.BigEndian.Uint64(s)
	}
	return 0
}

// SigValid reports whether signature i verifies over the manifest, so
// that a collector of signatures from several voters can leave out a bad
// one instead of having Install refuse the whole manifest for it.
func (m *Manifest) SigValid(i int) bool {
	if i < 0 || i >= len(m.Sigs) {
		return false
	}
	body, err := m.body()
	if err != nil {
		return false
	}
	s := m.Sigs[i]
	return len(s.Signer) == ed25519.PublicKeySize && len(s.Sig) == ed25519.SignatureSize &&
		ed25519.Verify(s.Signer, append([]byte(ManifestDomain), body...), s.Sig)
}

// SameBody reports whether o describes the same snapshot as m (every
// field but the signatures).
func (m *Manifest) SameBody(o *Manifest) bool {
	return m.Mesh == o.Mesh && m.Index == o.Index && m.Term == o.Term && m.Chain == o.Chain &&
		m.State == o.State && m.Size == o.Size && m.Voters.Equal(o.Voters)
}
