package consensus

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// An automatic block (CmdPutPolicy) is written to the log as a
// CmdProvenBlock entry, so that its proofs travel as the bytes that were
// signed rather than as base64 inside JSON, and a replica decodes only the
// policy as JSON:
//
//	type byte (CmdProvenBlock)
//	uvarint n, then n bytes: the command as JSON, without "proofs"
//	uvarint count, then count times: uvarint length, then the proof's bytes
//	nothing after the last proof
//
// It decodes to a Command of type CmdPutPolicy, checked as any other. An
// entry of type CmdPutPolicy (the whole command as JSON) is still read.

// encodeProvenBlock is Encode for CmdPutPolicy.
func (c Command) encodeProvenBlock() ([]byte, error) {
	proofs := c.Proofs
	c.Proofs = nil
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Type, err)
	}
	size := 1 + binary.MaxVarintLen64 + len(body) + binary.MaxVarintLen64
	for _, p := range proofs {
		size += binary.MaxVarintLen64 + len(p)
	}
	b := make([]byte, 0, size)
	b = append(b, byte(CmdProvenBlock))
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = append(b, body...)
	b = binary.AppendUvarint(b, uint64(len(proofs)))
	for _, p := range proofs {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	if len(b) > maxCommandSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInvalidCommand, c.Type, len(b), maxCommandSize)
	}
	return b, nil
}

// decodeProvenBlock is DecodeCommand for a CmdProvenBlock entry. The
// proofs returned are copies: they do not alias b.
func decodeProvenBlock(b []byte) (Command, error) {
	bad := func(format string, args ...any) (Command, error) {
		return Command{}, fmt.Errorf("%w: decode %s: %s", ErrInvalidCommand, CmdProvenBlock, fmt.Sprintf(format, args...))
	}
	rest := b[1:]
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return nil, false
		}
		f := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return f, true
	}
	body, ok := field()
	if !ok {
		return bad("truncated command")
	}
	var c Command
	if err := json.Unmarshal(body, &c); err != nil {
		return bad("%v", err)
	}
	if c.Proofs != nil {
		return bad("proofs inside the JSON")
	}
	count, k := binary.Uvarint(rest)
	// Every proof takes at least its length's byte: a count beyond the
	// bytes left is a lie, refused before anything is allocated for it.
	if k <= 0 || count > uint64(len(rest)-k) {
		return bad("truncated proof count")
	}
	rest = rest[k:]
	buf := make([]byte, 0, len(rest))
	c.Proofs = make([][]byte, 0, count)
	for i := range count {
		p, ok := field()
		if !ok {
			return bad("proof %d truncated", i)
		}
		buf = append(buf, p...)
		c.Proofs = append(c.Proofs, buf[len(buf)-len(p):len(buf):len(buf)])
	}
	if len(rest) != 0 {
		return bad("%d bytes after the last proof", len(rest))
	}
	c.Type = CmdPutPolicy
	return c, nil
}
