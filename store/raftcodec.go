package store

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
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
//
// Version 2 is version 1 with Data compressed (DEFLATE, RFC 1951): its
// field is the uvarint len(Data), then the uvarint length of the
// compressed bytes, then those. An entry is written in version 2 when
// its Data is at least compressMin bytes and compresses to at most 7/8
// of them: the raft log's bulk commands (a JSON body of up to 2,000
// indicators, base64 in the command) shrink some fourfold to thirteen
// times, and every byte Badger writes to its value log stays in the
// process's resident set while the file is mapped (49 bytes a policy
// held, uncompressed). Both versions are read.
const (
	logFormatV1 = 1
	logFormatV2 = 2

	compressMin = 4 << 10
	// maxInflated bounds the Data a version 2 entry may claim.
	maxInflated = 64 << 20
)

func encodeLog(l *raft.Log) ([]byte, error) {
	var ts []byte
	if !l.AppendedAt.IsZero() {
		var err error
		if ts, err = l.AppendedAt.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("encode appended-at: %w", err)
		}
	}
	var packed []byte
	if len(l.Data) >= compressMin {
		packed = deflate(l.Data)
		if len(packed) > len(l.Data)/8*7 {
			packed = nil // not worth it
		}
	}
	version, data := byte(logFormatV1), l.Data
	if packed != nil {
		version, data = logFormatV2, packed
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+1+len(ts)+len(data)+len(l.Extensions)+3*binary.MaxVarintLen64)
	b = append(b, version)
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	b = binary.AppendUvarint(b, uint64(len(ts)))
	b = append(b, ts...)
	if packed != nil {
		b = binary.AppendUvarint(b, uint64(len(l.Data)))
		b = binary.AppendUvarint(b, uint64(len(packed)))
		b = append(b, packed...)
	} else {
		b = appendNullableBytes(b, l.Data)
	}
	b = appendNullableBytes(b, l.Extensions)
	return b, nil
}

// deflaters are DEFLATE writers at BestSpeed, reused: each holds some
// hundreds of kilobytes of state.
var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(io.Discard, flate.BestSpeed) // a valid level: never an error
	return w
}}

func deflate(p []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(p) / 4)
	w := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(w)
	w.Reset(&out)
	// Writing to a bytes.Buffer does not fail.
	_, _ = w.Write(p)
	_ = w.Close()
	return out.Bytes()
}

// inflate decompresses p, which must inflate to exactly n bytes.
func inflate(p []byte, n uint64) ([]byte, error) {
	if n > maxInflated {
		return nil, fmt.Errorf("%w: data of %d bytes, limit %d", errBadLog, n, maxInflated)
	}
	r := flate.NewReader(bytes.NewReader(p))
	defer r.Close()
	out := make([]byte, n)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("%w: compressed data: %w", errBadLog, err)
	}
	if k, err := r.Read(make([]byte, 1)); k != 0 || err != io.EOF {
		return nil, fmt.Errorf("%w: compressed data longer than %d bytes", errBadLog, n)
	}
	return out, nil
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
	if len(b) == 0 || b[0] != logFormatV1 && b[0] != logFormatV2 {
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
	var data []byte
	if b[0] == logFormatV2 {
		n := d.uvarint()
		packed := d.bytes(d.uvarint())
		if d.err == nil {
			var err error
			if data, err = inflate(packed, n); err != nil {
				return err
			}
		}
	} else {
		data = d.nullableBytes()
	}
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
