package consensus

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/meshward/meshward/intel"
)

// The snapshot's encoding, version 3: the magic line, the state other than
// the policies as JSON (length first), then one record per policy in ID
// order and an end mark. A policy's strings that repeat (action, indicator
// type, reason, author, evidence origin and detector) are written once and
// then referred to by number; times are time.Time's binary form. Version
// 1 and 2 snapshots (one JSON object) are still read.
//
//	snapshot = magic uvarint(len(rest)) rest {1 policy} 0
//	policy   = str(id) ref(action) ref(type) str(value) ref(reason) ref(author)
//	           time(created) time(expires) uvarint(n) n*evidence
//	evidence = ref(origin) uvarint(seq) ref(detector) time(seen)
//	str      = uvarint(len) bytes
//	ref      = uvarint(0) str   (a new string, numbered from 0 in order)
//	         | uvarint(k+1)     (the k-th string)
//	time     = str(time.MarshalBinary)
const snapshotMagic = "MWSNAP3\n"

// Bounds that keep a damaged snapshot from making restore allocate
// without end.
const (
	maxSnapshotRest   = 64 << 20 // the JSON of everything but the policies
	maxSnapshotString = 1 << 20
	maxSnapshotDict   = 1 << 16 // strings numbered for reference
	maxSnapshotEv     = 1 << 10 // evidence of one policy
)

type snapWriter struct {
	w    *bufio.Writer
	dict map[string]uint64
	buf  []byte
}

func (e *snapWriter) uvarint(v uint64) {
	e.buf = binary.AppendUvarint(e.buf[:0], v)
	e.w.Write(e.buf)
}

func (e *snapWriter) str(s string) {
	e.uvarint(uint64(len(s)))
	e.w.WriteString(s)
}

func (e *snapWriter) ref(s string) {
	if k, ok := e.dict[s]; ok {
		e.uvarint(k + 1)
		return
	}
	e.uvarint(0)
	e.str(s)
	if len(e.dict) < maxSnapshotDict {
		e.dict[s] = uint64(len(e.dict))
	}
}

func (e *snapWriter) time(t time.Time) error {
	b, err := t.MarshalBinary()
	if err != nil {
		// An offset the binary form cannot hold: the same instant in UTC.
		if b, err = t.UTC().MarshalBinary(); err != nil {
			return fmt.Errorf("encode time %s: %w", t, err)
		}
	}
	e.uvarint(uint64(len(b)))
	e.w.Write(b)
	return nil
}

func (e *snapWriter) policy(p *intel.Policy) error {
	e.w.WriteByte(1)
	e.str(p.ID)
	e.ref(string(p.Action))
	e.ref(string(p.Indicator.Type))
	e.str(p.Indicator.Value)
	e.ref(p.Reason)
	e.ref(p.Author)
	if err := e.time(p.CreatedAt); err != nil {
		return err
	}
	if err := e.time(p.ExpiresAt); err != nil {
		return err
	}
	e.uvarint(uint64(len(p.Evidence)))
	for _, ev := range p.Evidence {
		e.ref(ev.Origin)
		e.uvarint(ev.Seq)
		e.ref(ev.Detector)
		if err := e.time(ev.Seen); err != nil {
			return err
		}
	}
	return nil
}

// write encodes the snapshot to w, streaming the policies.
func (s *fsmSnapshot) write(w io.Writer) error {
	rest, err := json.Marshal(s.rest())
	if err != nil {
		return err
	}
	e := &snapWriter{w: bufio.NewWriterSize(w, 64<<10), dict: map[string]uint64{}}
	e.w.WriteString(snapshotMagic)
	e.uvarint(uint64(len(rest)))
	e.w.Write(rest)
	s.policies.Ascend(func(stored rec) bool {
		r := s.tables.view(stored)
		p := r.policy(s.tables.strs)
		err = e.policy(&p)
		return err == nil
	})
	if err != nil {
		return err
	}
	e.w.WriteByte(0)
	return e.w.Flush()
}

type snapReader struct {
	r    *bufio.Reader
	dict []string
}

func (d *snapReader) uvarint() (uint64, error) { return binary.ReadUvarint(d.r) }

func (d *snapReader) bytes(limit int) ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("a field of %d bytes, limit %d", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (d *snapReader) str() (string, error) {
	b, err := d.bytes(maxSnapshotString)
	return string(b), err
}

func (d *snapReader) ref() (string, error) {
	k, err := d.uvarint()
	if err != nil {
		return "", err
	}
	if k > 0 {
		if k-1 >= uint64(len(d.dict)) {
			return "", fmt.Errorf("string %d referred to before it was given", k-1)
		}
		return d.dict[k-1], nil
	}
	s, err := d.str()
	if err != nil {
		return "", err
	}
	if len(d.dict) < maxSnapshotDict {
		d.dict = append(d.dict, s)
	}
	return s, nil
}

func (d *snapReader) time() (time.Time, error) {
	b, err := d.bytes(64)
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if err := t.UnmarshalBinary(b); err != nil {
		return time.Time{}, err
	}
	return t, nil
}

func (d *snapReader) policy() (intel.Policy, error) {
	var (
		p      intel.Policy
		err    error
		action string
		typ    string
	)
	read := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	read(func() (e error) { p.ID, e = d.str(); return })
	read(func() (e error) { action, e = d.ref(); return })
	read(func() (e error) { typ, e = d.ref(); return })
	read(func() (e error) { p.Indicator.Value, e = d.str(); return })
	read(func() (e error) { p.Reason, e = d.ref(); return })
	read(func() (e error) { p.Author, e = d.ref(); return })
	read(func() (e error) { p.CreatedAt, e = d.time(); return })
	read(func() (e error) { p.ExpiresAt, e = d.time(); return })
	var n uint64
	read(func() (e error) { n, e = d.uvarint(); return })
	if err == nil && n > maxSnapshotEv {
		err = fmt.Errorf("%d evidence entries, limit %d", n, maxSnapshotEv)
	}
	for i := uint64(0); err == nil && i < n; i++ {
		var ev intel.Evidence
		read(func() (e error) { ev.Origin, e = d.ref(); return })
		read(func() (e error) { ev.Seq, e = d.uvarint(); return })
		read(func() (e error) { ev.Detector, e = d.ref(); return })
		read(func() (e error) { ev.Seen, e = d.time(); return })
		p.Evidence = append(p.Evidence, ev)
	}
	p.Action, p.Indicator.Type = intel.Action(action), intel.IndicatorType(typ)
	return p, err
}

// decodeSnapshot reads a snapshot of any version: its policies into a new
// store, one at a time, and the other fields into st.
func decodeSnapshot(r *bufio.Reader) (snapshotState, *policyStore, error) {
	if head, _ := r.Peek(len(snapshotMagic)); !bytes.Equal(head, []byte(snapshotMagic)) {
		return decodeJSONSnapshot(r)
	}
	var st snapshotState
	r.Discard(len(snapshotMagic))
	d := &snapReader{r: r}
	rest, err := d.bytes(maxSnapshotRest)
	if err != nil {
		return st, nil, fmt.Errorf("state: %w", err)
	}
	if err := json.Unmarshal(rest, &st); err != nil {
		return st, nil, fmt.Errorf("state: %w", err)
	}
	s := newPolicyStore()
	s.changes = nil // a restore is not a sequence of changes
	for i := 0; ; i++ {
		tag, err := r.ReadByte()
		if err != nil {
			return st, nil, fmt.Errorf("policies[%d]: %w", i, unexpectedEOF(err))
		}
		if tag == 0 {
			break
		}
		if tag != 1 {
			return st, nil, fmt.Errorf("policies[%d]: record type %d", i, tag)
		}
		p, err := d.policy()
		if err != nil {
			return st, nil, fmt.Errorf("policies[%d]: %w", i, unexpectedEOF(err))
		}
		if err := s.load(p); err != nil {
			return st, nil, fmt.Errorf("policies[%d]: %w", i, err)
		}
	}
	return st, s, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
