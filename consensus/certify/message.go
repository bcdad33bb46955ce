package certify

import (
	"encoding/binary"
	"fmt"
)

// Message is what servers publish to edges (over GossipSub, or in answer
// to an edge's catch-up request): a run of chain entries, in order, and
// certificates. A voter publishes its certificate for its head; one server
// (the leader) publishes the entries too.
type Message struct {
	Entries []Entry
	Certs   []Cert
}

// Bounds of one message: GossipSub's default limit is 1 MiB.
const (
	MaxMessageSize    = 1 << 20
	MaxMessageEntries = 1024
	MaxMessageCerts   = MaxVoters
)

// Message wire format, version 1 (big endian):
//
//	1 version (1), 2 entry count e, 1 certificate count c,
//	e × (4 length n, n bytes: an entry), c × (2 length n, n bytes: a
//	certificate).
const messageVersion = 1

// MarshalBinary encodes m.
func (m *Message) MarshalBinary() ([]byte, error) {
	if len(m.Entries) > MaxMessageEntries || len(m.Certs) > MaxMessageCerts {
		return nil, fmt.Errorf("message: %d entries, %d certificates (limits %d, %d)", len(m.Entries), len(m.Certs), MaxMessageEntries, MaxMessageCerts)
	}
	b := []byte{messageVersion, 0, 0, byte(len(m.Certs))}
	binary.BigEndian.PutUint16(b[1:], uint16(len(m.Entries)))
	for i := range m.Entries {
		eb, err := m.Entries[i].MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("message: %w", err)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(eb)))
		b = append(b, eb...)
	}
	for i := range m.Certs {
		cb, err := m.Certs[i].MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("message: %w", err)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(cb)))
		b = append(b, cb...)
	}
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("message: %d bytes, limit %d", len(b), MaxMessageSize)
	}
	return b, nil
}

// UnmarshalBinary decodes a message; the error names the part and the
// byte offset at fault.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) > MaxMessageSize {
		return fmt.Errorf("message: %d bytes, limit %d", len(b), MaxMessageSize)
	}
	if len(b) < 4 {
		return fmt.Errorf("message: %d bytes, header needs 4", len(b))
	}
	if b[0] != messageVersion {
		return fmt.Errorf("message: version %d at byte 0, want %d", b[0], messageVersion)
	}
	ne, nc := int(binary.BigEndian.Uint16(b[1:])), int(b[3])
	if ne > MaxMessageEntries || nc > MaxMessageCerts {
		return fmt.Errorf("message: %d entries, %d certificates (limits %d, %d)", ne, nc, MaxMessageEntries, MaxMessageCerts)
	}
	var d Message
	off := 4
	part := func(what string, i, lenSize int) ([]byte, error) {
		if len(b)-off < lenSize {
			return nil, fmt.Errorf("message: %s %d: length at byte %d: %d bytes left", what, i, off, len(b)-off)
		}
		var n int
		if lenSize == 4 {
			n = int(binary.BigEndian.Uint32(b[off:]))
		} else {
			n = int(binary.BigEndian.Uint16(b[off:]))
		}
		off += lenSize
		if n > len(b)-off {
			return nil, fmt.Errorf("message: %s %d: %d bytes at byte %d, %d left", what, i, n, off, len(b)-off)
		}
		p := b[off : off+n]
		off += n
		return p, nil
	}
	for i := range ne {
		p, err := part("entry", i, 4)
		if err != nil {
			return err
		}
		var e Entry
		if err := e.UnmarshalBinary(p); err != nil {
			return fmt.Errorf("message: entry %d at byte %d: %w", i, off-len(p), err)
		}
		d.Entries = append(d.Entries, e)
	}
	for i := range nc {
		p, err := part("certificate", i, 2)
		if err != nil {
			return err
		}
		var c Cert
		if err := c.UnmarshalBinary(p); err != nil {
			return fmt.Errorf("message: certificate %d at byte %d: %w", i, off-len(p), err)
		}
		d.Certs = append(d.Certs, c)
	}
	if off != len(b) {
		return fmt.Errorf("message: %d bytes after the end at byte %d", len(b)-off, off)
	}
	*m = d
	return nil
}

// Offer gives an edge every entry and certificate of a message, entries
// first, and returns the refusals (the first few, and how many).
func (e *Edge) Offer(m *Message) (refused int, first error) {
	note := func(err error) {
		if err != nil {
			refused++
			if first == nil {
				first = err
			}
		}
	}
	for _, en := range m.Entries {
		note(e.AddEntry(en))
	}
	for _, c := range m.Certs {
		note(e.AddCert(c))
	}
	return refused, first
}
