package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Raft log encoding, version 1:
//
//	1 byte   format version (1)
//	uvarint  Index
//	uvarint  Term
//	1 byte   Type
//	uvarint  length of AppendedAt's MarshalBinary form, then those bytes
//	         (0: the zero time)
//	uvarint  0 for nil Data, else len(Data)+1, then Data
//	uvarint  0 for nil Extensions, else len(Extensions)+1, then Extensions
const logFormatV1 = 1

func encodeLog(l *raft.Log) ([]byte, error) {
	var ts []byte
	if !l.AppendedAt.IsZero() {
		var err error
		if ts, err = l.AppendedAt.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("encode appended-at: %w", err)
		}
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+1+len(ts)+len(l.Data)+len(l.Extensions)+2*binary.MaxVarintLen64)
	b = append(b, logFormatV1)
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	b = binary.AppendUvarint(b, uint64(len(ts)))
	b = append(b, ts...)
	b = appendNullableBytes(b, l.Data)
	b = appendNullableBytes(b, l.Extensions)
	return b, nil
}

func appendNullableBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

var errBadLog = errors.New("malformed raft log entry")

// decodeLog decodes b into l. b belongs to Badger and is only valid during
// the call, so every slice is copied.
func decodeLog(b []byte, l *raft.Log) error {
	if len(b) == 0 || b[0] != logFormatV1 {
		return fmt.Errorf("%w: unknown format", errBadLog)
	}
	d := decoder{b: b[1:]}
	idx := d.uvarint()
	term := d.uvarint()
	typ := d.byte()
	var at time.Time
	if ts := d.bytes(d.uvarint()); len(ts) > 0 && d.err == nil {
		if err := at.UnmarshalBinary(ts); err != nil {
			return fmt.Errorf("%w: appended-at: %w", errBadLog, err)
		}
	}
	data := d.nullableBytes()
	ext := d.nullableBytes()
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errBadLog, len(d.b))
	}
	*l = raft.Log{Index: idx, Term: term, Type: raft.LogType(typ), Data: data, Extensions: ext, AppendedAt: at}
	return nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", errBadLog)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// bytes returns the next n bytes, not copied.
func (d *decoder) bytes(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) nullableBytes() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	v := d.bytes(n - 1)
	if d.err != nil {
		return nil
	}
	return append([]byte{}, v...)
}
