package consensus

import (
	"crypto/ed25519"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// leaderReplica is an FSM fed as the leader feeds its own: each entry is
// decoded and checked early (precheck), possibly several before the first
// is applied, then applied.
type leaderReplica struct {
	replica
	checked map[string]Command // what precheck was handed, by entry
}

func (r *leaderReplica) precheck(t *testing.T, data []byte) string {
	t.Helper()
	c, err := DecodeCommand(data)
	if err != nil {
		// As applyLocal: an entry that does not decode is not checked.
		return "undecodable"
	}
	r.checked[string(data)] = c
	if err := r.f.precheck(data, &c); err != nil {
		return err.Error()
	}
	return ""
}

// The decode memo changes nothing Apply does: a leader with the memo, the
// same leader without it and a follower (Apply only) give the same answer
// to every entry and end with the same state; the two leaders count the
// same refusals. The entries are checked in batches before they are
// applied, so the state an entry was checked against is not the one it
// is applied to (an allow, a replayed operator command, the same bytes
// twice); refused, malformed and undecodable entries are among them; and
// entries that differ in one bit from a memoised one are applied while it
// is held, then it is.
func TestDecodeMemoChangesNothing(t *testing.T) {
	ka, kb, stranger := seededKey("dm-a"), seededKey("dm-b"), seededKey("dm-stranger")
	memo := &leaderReplica{replica{f: newFSM(nil)}, map[string]Command{}}
	plain := &leaderReplica{replica{f: newFSM(nil)}, map[string]Command{}}
	plain.f.decoded = nil
	follower := &replica{f: newFSM(nil)}
	follower.f.decoded = nil

	// batch checks every entry on both leaders, then applies every entry
	// on all three, comparing the answers.
	batch := func(entries ...[]byte) []string {
		t.Helper()
		var early []string
		for i, e := range entries {
			a, b := memo.precheck(t, e), plain.precheck(t, e)
			if a != b {
				t.Fatalf("entry %d checked early: %q with the memo, %q without", i, a, b)
			}
			early = append(early, a)
		}
		var out []string
		for i, e := range entries {
			a, b, c := memo.apply(e), plain.apply(e), follower.apply(e)
			if a != b || a != c {
				t.Fatalf("entry %d: %q with the memo, %q without, %q on a follower (checked early: %q)", i, a, b, c, early[i])
			}
			out = append(out, a)
		}
		return out
	}
	same := func() {
		t.Helper()
		s := snapshotBytes(t, memo.f)
		if p := snapshotBytes(t, plain.f); string(p) != string(s) {
			t.Fatalf("state with the memo:\n%s\nwithout:\n%s", s, p)
		}
		if p := snapshotBytes(t, follower.f); string(p) != string(s) {
			t.Fatalf("state with the memo:\n%s\non a follower:\n%s", s, p)
		}
		if a, b := fmt.Sprint(memo.f.refused.snapshot()), fmt.Sprint(plain.f.refused.snapshot()); a != b {
			t.Fatalf("refusals with the memo %s, without %s", a, b)
		}
	}

	for _, e := range [][]byte{
		encode(t, Command{Type: CmdInit, At: t0.Add(-time.Hour), Init: testInit()}),
		encode(t, createTokenCmd(t, t0.Add(-time.Hour), 10)),
		encode(t, joinAdmit(intel.NodeID(ka.Public().(ed25519.PublicKey)), t0.Add(-time.Hour))),
		encode(t, joinAdmit(intel.NodeID(kb.Public().(ed25519.PublicKey)), t0.Add(-time.Hour))),
	} {
		if res := batch(e); res[0] != "" {
			t.Fatal(res[0])
		}
	}
	if n := memo.f.decoded.len(); n != 0 {
		t.Fatalf("%d commands left in the memo after their Apply", n)
	}

	at := t0
	block := func(ind string, keys ...ed25519.PrivateKey) []byte {
		at = at.Add(time.Second)
		var proofs [][]byte
		for i, k := range keys {
			proofs = append(proofs, sealSighting(t, k, uint64(at.UnixNano())+uint64(i), mustIndicator(t, ind), at))
		}
		return encode(t, autoBlock(t, ind, at, time.Hour, proofs...))
	}
	op := func(cmd intel.OperatorCommand) []byte {
		at = at.Add(time.Second)
		return encode(t, opCmd(signOp(t, testOperatorKey, testMeshID, at, cmd), at))
	}
	manual := op(blockOp(t, "192.0.2.9", time.Hour))
	res := batch(
		block("203.0.113.7", ka, kb),
		op(allowOp(t, "198.51.100.0/24", time.Hour)),
		block("198.51.100.7", ka, kb), // checked before the allow is applied
		manual,
		manual, // the same bytes: one memo entry, then a replayed nonce
		block("203.0.113.8", ka, stranger),
		block("203.0.113.9", ka),
		[]byte{byte(CmdProvenBlock), 1, 2, 3},
		block("203.0.113.10", ka, kb),
	)
	want := []string{"", "", "allowed", "", "replayed_nonce", "proof_not_member", "too_few_signers", "malformed", ""}
	for i, w := range want {
		if (w == "") != (res[i] == "") || !strings.Contains(res[i], w) {
			t.Fatalf("entry %d: %q, want %q", i, res[i], w)
		}
	}
	if n := memo.f.decoded.len(); n != 0 {
		t.Fatalf("%d commands left in the memo after their Apply", n)
	}
	same()

	// One entry memoised; entries that differ from it in one bit applied
	// while it is held (each decoded afresh: refused, or accepted as the
	// different command it is), then the entry itself.
	held := block("203.0.113.20", ka, kb)
	if res := memo.precheck(t, held); res != "" {
		t.Fatal(res)
	}
	plain.precheck(t, held)
	accepted := 0
	for i := 3; i < 8*len(held); i += 11 {
		v := flipBit(held, i)
		a, b, c := memo.apply(v), plain.apply(v), follower.apply(v)
		if a != b || a != c {
			t.Fatalf("bit %d: %q with the memo, %q without, %q on a follower", i, a, b, c)
		}
		if a == "" {
			accepted++
		}
		if n := memo.f.decoded.len(); n != 1 {
			t.Fatalf("bit %d: the memo holds %d commands, want the one checked", i, n)
		}
	}
	if accepted == 0 {
		t.Fatal("no one-bit variant was accepted: the comparison saw refusals only")
	}
	if a, b, c := memo.apply(held), plain.apply(held), follower.apply(held); a != "" || b != "" || c != "" {
		t.Fatalf("the held entry: %q with the memo, %q without, %q on a follower", a, b, c)
	}
	if n := memo.f.decoded.len(); n != 0 {
		t.Fatalf("the memo holds %d commands after the held entry's Apply", n)
	}
	same()

	// What precheck was handed, and the memo with it, was not mutated by
	// the checks or by Apply.
	for data, c := range memo.checked {
		d, err := DecodeCommand([]byte(data))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c, d) {
			t.Fatalf("a checked command changed:\n%+v\ndecoded again:\n%+v", c, d)
		}
	}
}

// The memo holds at most decodeMemoSize commands, the latest; an entry
// taken is gone; a dropped one too; entries over decodeMemoMaxEntry are
// not kept; a nil memo keeps nothing.
func TestDecodeMemoBounded(t *testing.T) {
	m := newDecodeMemo()
	entry := func(i int) []byte { return fmt.Appendf(nil, "entry %d", i) }
	const n = 4*decodeMemoSize + 7
	for i := range n {
		m.put(entry(i), Command{PolicyID: fmt.Sprint(i)})
		if m.len() > decodeMemoSize {
			t.Fatalf("after %d puts the memo holds %d, limit %d", i+1, m.len(), decodeMemoSize)
		}
		if i%3 == 0 {
			if c, ok := m.take(entry(i)); !ok || c.PolicyID != fmt.Sprint(i) {
				t.Fatalf("entry %d: %+v, %v", i, c, ok)
			}
		}
	}
	if len(m.byKey) != m.len() {
		t.Fatalf("%d held, %d counted", len(m.byKey), m.len())
	}
	for i := range n {
		c, ok := m.take(entry(i))
		want := i%3 != 0 && i >= n-decodeMemoSize
		if ok != want || (ok && c.PolicyID != fmt.Sprint(i)) {
			t.Fatalf("entry %d: found %v (%+v), want %v", i, ok, c, want)
		}
	}
	if m.len() != 0 {
		t.Fatalf("%d left", m.len())
	}
	m.put(entry(1), Command{})
	m.drop(entry(1))
	if _, ok := m.take(entry(1)); ok || m.len() != 0 {
		t.Fatal("a dropped entry was found")
	}
	m.put(make([]byte, decodeMemoMaxEntry+1), Command{})
	if m.len() != 0 {
		t.Fatal("an oversized entry was kept")
	}
	var none *decodeMemo
	none.put(entry(1), Command{})
	if _, ok := none.take(entry(1)); ok || none.len() != 0 {
		t.Fatal("a nil memo kept something")
	}
}

// Puts, takes and drops from many goroutines (run with -race).
func TestDecodeMemoConcurrent(t *testing.T) {
	m := newDecodeMemo()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				e := fmt.Appendf(nil, "entry %d", (g*7919+i)%600)
				switch i % 3 {
				case 0:
					m.put(e, Command{PolicyID: string(e)})
				case 1:
					if c, ok := m.take(e); ok && c.PolicyID != string(e) {
						t.Errorf("%s: took %q", e, c.PolicyID)
					}
				default:
					m.drop(e)
				}
			}
		})
	}
	wg.Wait()
	if m.len() > decodeMemoSize || m.len() != len(m.byKey) {
		t.Fatalf("%d held, %d counted, limit %d", len(m.byKey), m.len(), decodeMemoSize)
	}
}
