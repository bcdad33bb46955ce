package certify

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

func TestCodecRoundTrip(t *testing.T) {
	c := newChain()
	c.commands(2)
	c.add(raft.LogConfiguration, configData(kA, kB), 3)
	for _, en := range c.entries {
		b, err := en.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Entry
		if err := got.UnmarshalBinary(b); err != nil || !got.same(&en) {
			t.Fatalf("entry %d: %v %+v", en.Index, err, got)
		}
	}
	ct := c.cert(t, kA, c.last())
	b, err := ct.MarshalBinary()
	if err != nil || len(b) != CertSize(len(testMesh)) {
		t.Fatal(err, len(b))
	}
	var got Cert
	if err := got.UnmarshalBinary(b); err != nil || !got.Verify() || got.Hash != ct.Hash || got.Index != ct.Index {
		t.Fatalf("certificate: %v %+v", err, got)
	}
	m := NewManifest(testMesh, 9, 2, c.hashes[2], votersOf(kA, kB, kC), []byte("state"))
	if err := m.Sign(kA); err != nil {
		t.Fatal(err)
	}
	b, err = m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var gm Manifest
	if err := gm.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := gm.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatal("manifest does not round-trip")
	}
	// Truncations are refused with the field named.
	for n := range len(b) {
		if err := gm.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("manifest truncated to %d bytes decoded", n)
		}
	}
}

// The chain commits to every field of every entry.
func TestLinkCommitsToEveryField(t *testing.T) {
	base := Entry{Index: 5, Term: 2, Prev: 3, Type: raft.LogCommand, Data: []byte("x")}
	h := Link(GenesisHash, &base)
	for name, mut := range map[string]func(*Entry){
		"index": func(e *Entry) { e.Index++ },
		"term":  func(e *Entry) { e.Term++ },
		"prev":  func(e *Entry) { e.Prev++ },
		"type":  func(e *Entry) { e.Type = raft.LogConfiguration },
		"data":  func(e *Entry) { e.Data = []byte("y") },
		"len":   func(e *Entry) { e.Data = []byte("x\x00") },
	} {
		e := base
		mut(&e)
		if Link(GenesisHash, &e) == h {
			t.Errorf("changing the %s leaves the hash", name)
		}
	}
	if Link(Hash{1}, &base) == h {
		t.Error("the previous hash does not count")
	}
}

// FuzzDecode: whatever the bytes (an entry, a certificate, a manifest, a
// message), decoding returns an error or a value
// that encodes back to the same bytes, and never panics; configuration
// data never panics either.
func FuzzDecode(f *testing.F) {
	c := newChain()
	c.commands(1)
	eb, _ := c.entries[0].MarshalBinary()
	ct := c.cert(f, kA, c.last())
	cb, _ := ct.MarshalBinary()
	m := NewManifest(testMesh, 1, 1, c.hashes[0], votersOf(kA), []byte("s"))
	_ = m.Sign(kA)
	mb, _ := m.MarshalBinary()
	msg := Message{Entries: c.entries, Certs: []Cert{ct}}
	gb, _ := msg.MarshalBinary()
	for _, s := range [][]byte{eb, cb, mb, gb, configData(kA, kB), {}, {1}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Entry
		if e.UnmarshalBinary(b) == nil {
			if out, err := e.MarshalBinary(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("entry does not round-trip: %v", err)
			}
		}
		var ct Cert
		if ct.UnmarshalBinary(b) == nil {
			if out, err := ct.MarshalBinary(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("certificate does not round-trip: %v", err)
			}
			_ = ct.Verify()
		}
		var m Manifest
		if m.UnmarshalBinary(b) == nil {
			if out, err := m.MarshalBinary(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("manifest does not round-trip: %v", err)
			}
		}
		var msg Message
		if msg.UnmarshalBinary(b) == nil {
			if out, err := msg.MarshalBinary(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("message does not round-trip: %v", err)
			}
		}
		_, _ = ConfigVoters(b)
	})
}
