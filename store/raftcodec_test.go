package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// bulkData is a bulk command's body as the raft log carries it: a JSON
// list of indicators.
func bulkData(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"op":"block_bulk","indicators":[`)
	for i := range n {
		fmt.Fprintf(&b, `{"type":"ipv4","value":"10.%d.%d.%d"},`, i>>16&255, i>>8&255, i&255)
	}
	b.WriteString(`{}]}`)
	return []byte(b.String())
}

// A raft entry of 4 KiB and more that compresses well is stored
// compressed (version 2) and reads back as it was, through the store too;
// short entries, entries that do not compress and entries without data
// are stored as before (version 1).
func TestRaftLogCompressed(t *testing.T) {
	random := make([]byte, 64<<10)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	s := openStore(t, DefaultOptions(t.TempDir()))
	for i, c := range []struct {
		name    string
		log     raft.Log
		version byte
	}{
		{"bulk", raft.Log{Index: 1, Term: 2, Type: raft.LogCommand, Data: bulkData(2000), Extensions: []byte("ext"), AppendedAt: at}, logFormatV2},
		{"just compressed", raft.Log{Index: 2, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte("a"), compressMin)}, logFormatV2},
		{"short", raft.Log{Index: 3, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte("a"), compressMin-1)}, logFormatV1},
		{"random", raft.Log{Index: 4, Term: 2, Type: raft.LogCommand, Data: random}, logFormatV1},
		{"no data", raft.Log{Index: 5, Term: 3, Type: raft.LogNoop}, logFormatV1},
	} {
		b, err := encodeLog(&c.log)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if b[0] != c.version {
			t.Errorf("%s (%d bytes of data): version %d, want %d", c.name, len(c.log.Data), b[0], c.version)
		}
		if c.version == logFormatV2 && len(b) > len(c.log.Data)/4 {
			t.Errorf("%s: %d bytes of data stored in %d", c.name, len(c.log.Data), len(b))
		}
		var got raft.Log
		if err := decodeLog(b, &got); err != nil || !reflect.DeepEqual(got, c.log) {
			t.Fatalf("%s: decoded %v, %v; want the entry back", c.name, got.Index, err)
		}
		if err := s.RaftStore().StoreLog(&c.log); err != nil {
			t.Fatal(err)
		}
		got = raft.Log{}
		if err := s.RaftStore().GetLog(uint64(i+1), &got); err != nil || !reflect.DeepEqual(got, c.log) {
			t.Fatalf("%s from the store: %v", c.name, err)
		}
	}
}

// An entry written before compression (version 1), of any size, reads
// back; a version 2 entry whose compressed data is cut, longer or shorter
// than it claims, or claims more than maxInflated, is refused as
// malformed.
func TestRaftLogVersionsRead(t *testing.T) {
	l := raft.Log{Index: 7, Term: 1, Type: raft.LogCommand, Data: bulkData(500)}
	v1 := []byte{logFormatV1}
	v1 = binary.AppendUvarint(v1, l.Index)
	v1 = binary.AppendUvarint(v1, l.Term)
	v1 = append(v1, byte(l.Type), 0)
	v1 = appendNullableBytes(v1, l.Data)
	v1 = appendNullableBytes(v1, nil)
	var got raft.Log
	if err := decodeLog(v1, &got); err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("version 1 entry of %d bytes of data: %v", len(l.Data), err)
	}

	v2 := func(claimed int, packed []byte) []byte {
		b := []byte{logFormatV2}
		b = binary.AppendUvarint(b, l.Index)
		b = binary.AppendUvarint(b, l.Term)
		b = append(b, byte(l.Type), 0)
		b = binary.AppendUvarint(b, uint64(claimed))
		b = binary.AppendUvarint(b, uint64(len(packed)))
		b = append(b, packed...)
		return appendNullableBytes(b, nil)
	}
	packed := deflate(l.Data)
	if err := decodeLog(v2(len(l.Data), packed), &got); err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("version 2 entry: %v", err)
	}
	for name, b := range map[string][]byte{
		"cut":           v2(len(l.Data), packed[:len(packed)/2]),
		"longer":        v2(len(l.Data)-1, packed),
		"shorter":       v2(len(l.Data)+1, packed),
		"too large":     v2(maxInflated+1, packed),
		"not deflate":   v2(len(l.Data), bytes.Repeat([]byte{0xff}, 64)),
		"length beyond": v2(len(l.Data), packed)[:20],
	} {
		if err := decodeLog(b, &got); !errors.Is(err, errBadLog) {
			t.Errorf("%s: %v, want %v", name, err, errBadLog)
		}
	}
}
