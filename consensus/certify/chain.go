package certify

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/raft"
)

// ChainDomain separates chain links from every other hash the mesh
// computes.
const ChainDomain = "meshward/certify/chain/v1\x00"

// MaxEntryData bounds an entry's data: the largest command the FSM
// accepts is 256 KiB, and a configuration of any real mesh is far below.
const MaxEntryData = 1 << 20

// Hash is a chain hash.
type Hash [sha256.Size]byte

func (h Hash) String() string { return hex.EncodeToString(h[:8]) }

// GenesisHash is h_0, the hash before the first entry: every mesh's chain
// starts from it (the mesh ID is bound by the certificates, and the first
// entry is the founder's bootstrap configuration).
var GenesisHash = sha256.Sum256([]byte(ChainDomain + "genesis"))

// Entry is one chain entry: a raft log entry the FSM applies.
type Entry struct {
	Index uint64
	Term  uint64
	// Prev is the index of the previous chain entry (0 for the first):
	// the indexes between hold entries the FSM never sees.
	Prev uint64
	Type raft.LogType // raft.LogCommand or raft.LogConfiguration
	Data []byte
}

// Link returns the chain hash after e, given the hash before it.
func Link(prev Hash, e *Entry) Hash {
	var hdr [len(ChainDomain) + sha256.Size + 8*3 + 1 + 8]byte
	n := copy(hdr[:], ChainDomain)
	n += copy(hdr[n:], prev[:])
	binary.BigEndian.PutUint64(hdr[n:], e.Prev)
	binary.BigEndian.PutUint64(hdr[n+8:], e.Index)
	binary.BigEndian.PutUint64(hdr[n+16:], e.Term)
	hdr[n+24] = byte(e.Type)
	binary.BigEndian.PutUint64(hdr[n+25:], uint64(len(e.Data)))
	d := sha256.New()
	d.Write(hdr[:])
	d.Write(e.Data)
	var h Hash
	d.Sum(h[:0])
	return h
}

// Chained reports whether the FSM applies entries of type t, and so
// whether they belong in the chain.
func Chained(t raft.LogType) bool { return t == raft.LogCommand || t == raft.LogConfiguration }

// check validates an entry's fields.
func (e *Entry) check() error {
	switch {
	case e.Index == 0:
		return fmt.Errorf("entry: index 0")
	case e.Prev >= e.Index:
		return fmt.Errorf("entry %d: prev %d is not below the index", e.Index, e.Prev)
	case !Chained(e.Type):
		return fmt.Errorf("entry %d: type %d is not applied by the FSM", e.Index, e.Type)
	case len(e.Data) > MaxEntryData:
		return fmt.Errorf("entry %d: data is %d bytes, limit %d", e.Index, len(e.Data), MaxEntryData)
	}
	return nil
}

// Entry wire format, version 1 (big endian):
//
//	0   1  version (1)
//	1   8  index
//	9   8  term
//	17  8  prev
//	25  1  type
//	26  4  data length n
//	30  n  data
const (
	entryVersion = 1
	entryHeader  = 30
)

// MarshalBinary encodes e.
func (e *Entry) MarshalBinary() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	b := make([]byte, entryHeader, entryHeader+len(e.Data))
	b[0] = entryVersion
	binary.BigEndian.PutUint64(b[1:], e.Index)
	binary.BigEndian.PutUint64(b[9:], e.Term)
	binary.BigEndian.PutUint64(b[17:], e.Prev)
	b[25] = byte(e.Type)
	binary.BigEndian.PutUint32(b[26:], uint32(len(e.Data)))
	return append(b, e.Data...), nil
}

// UnmarshalBinary decodes an entry; the error names the field at fault.
// e.Data is a copy.
func (e *Entry) UnmarshalBinary(b []byte) error {
	if len(b) < entryHeader {
		return fmt.Errorf("entry: %d bytes, header needs %d", len(b), entryHeader)
	}
	if b[0] != entryVersion {
		return fmt.Errorf("entry: version %d at byte 0, want %d", b[0], entryVersion)
	}
	n := binary.BigEndian.Uint32(b[26:])
	if uint64(n) != uint64(len(b)-entryHeader) {
		return fmt.Errorf("entry: data length %d at byte 26, %d bytes follow", n, len(b)-entryHeader)
	}
	d := Entry{
		Index: binary.BigEndian.Uint64(b[1:]),
		Term:  binary.BigEndian.Uint64(b[9:]),
		Prev:  binary.BigEndian.Uint64(b[17:]),
		Type:  raft.LogType(b[25]),
		Data:  append([]byte(nil), b[entryHeader:]...),
	}
	if err := d.check(); err != nil {
		return err
	}
	*e = d
	return nil
}

// same reports whether two entries are identical.
func (e *Entry) same(o *Entry) bool {
	return e.Index == o.Index && e.Term == o.Term && e.Prev == o.Prev && e.Type == o.Type && string(e.Data) == string(o.Data)
}
