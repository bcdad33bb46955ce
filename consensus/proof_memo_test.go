package consensus

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// memoReplicas are three FSMs fed the same entries: without a verify
// cache, with a cache of their own (cold) and with a cache that has
// opened every proof first, as gossip leaves it (warm). members are put
// on each roster directly, whatever admission requires.
func memoReplicas(t *testing.T, members []ed25519.PrivateKey, rules func(*Rules), warmWith ...[]byte) map[string]*replica {
	t.Helper()
	rs := map[string]*replica{"plain": {f: newFSM(nil)}, "cold": {f: newFSM(nil)}, "warm": {f: newFSM(nil)}}
	rs["cold"].f.verify = intel.NewVerifyCache(64)
	rs["warm"].f.verify = intel.NewVerifyCache(1024)
	init := testInit()
	if rules != nil {
		rules(&init.Rules)
	}
	for name, r := range rs {
		if res := r.apply(encode(t, Command{Type: CmdInit, At: t0.Add(-time.Hour), Init: init})); res != "" {
			t.Fatal(name, res)
		}
		r.f.mu.Lock()
		for _, k := range members {
			id := intel.NodeID(k.Public().(ed25519.PublicKey))
			r.f.roster[id] = Member{ID: id, AdmittedAt: t0.Add(-time.Hour)}
		}
		r.f.mu.Unlock()
	}
	for _, p := range warmWith {
		_, _ = rs["warm"].f.verify.Open(p) // refusals are not remembered
	}
	return rs
}

// feed applies every entry to every replica and fails on any difference
// in a result; it returns the plain replica's results. At the end the
// refusal counts and the snapshots must be the same.
func feed(t *testing.T, rs map[string]*replica, entries [][]byte) []string {
	t.Helper()
	var out []string
	for i, e := range entries {
		want := rs["plain"].apply(e)
		for _, name := range []string{"cold", "warm"} {
			if got := rs[name].apply(e); got != want {
				t.Fatalf("entry %d, %s cache: %q; without a cache: %q", i, name, got, want)
			}
		}
		out = append(out, want)
	}
	sp, rp := snapshotBytes(t, rs["plain"].f), fmt.Sprint(rs["plain"].f.refused.snapshot())
	for _, name := range []string{"cold", "warm"} {
		if s := snapshotBytes(t, rs[name].f); !bytes.Equal(s, sp) {
			t.Fatalf("%s cache: state differs\n%s\nwithout a cache:\n%s", name, s, sp)
		}
		if r := fmt.Sprint(rs[name].f.refused.snapshot()); r != rp {
			t.Fatalf("%s cache: refusals %s, without a cache %s", name, r, rp)
		}
	}
	return out
}

// A verified, remembered proof changed in any way is refused exactly as
// without a cache: one bit flipped anywhere in either proof; and, signed
// again by the same member, every field of the envelope and of the
// sighting changed, the kind, an invalid sighting (refused twice: the
// second time its signature is remembered but not its sighting). The
// entries go through both log encodings.
func TestFSMMemoRefusesChangedProof(t *testing.T) {
	ka, kb, stranger := seededKey("memo-a"), seededKey("memo-b"), seededKey("memo-stranger")
	ind := mustIndicator(t, "203.0.113.7")
	base := intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Technique: "T1110.001", Severity: intel.SeverityHigh,
		Confidence: 80, Count: 5, FirstSeen: t0.Add(-time.Minute), LastSeen: t0, Site: "par1"}
	seal := func(key ed25519.PrivateKey, kind intel.Kind, seq uint64, sent time.Time, s any) []byte {
		b, err := intel.SealJSON(key, kind, seq, sent, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pa, pb := seal(ka, intel.KindSighting, 1, t0, base), seal(kb, intel.KindSighting, 1, t0, base)

	type variant struct {
		name  string
		proof []byte
	}
	var vs []variant
	for i := range 8 * len(pa) {
		vs = append(vs, variant{fmt.Sprintf("bit %d", i), flipBit(pa, i)})
	}
	field := func(name string, change func(*intel.Sighting)) {
		s := base
		change(&s)
		vs = append(vs, variant{name, seal(ka, intel.KindSighting, 1, t0, s)})
	}
	field("indicator", func(s *intel.Sighting) { s.Indicator = mustIndicator(t, "203.0.113.6") })
	field("indicator type", func(s *intel.Sighting) { s.Indicator = mustIndicator(t, "203.0.113.7/32") })
	field("detector", func(s *intel.Sighting) { s.Detector = "other" })
	field("technique", func(s *intel.Sighting) { s.Technique = "T1046" })
	field("severity", func(s *intel.Sighting) { s.Severity = intel.SeverityLow })
	field("confidence", func(s *intel.Sighting) { s.Confidence = 81 })
	field("count", func(s *intel.Sighting) { s.Count = 6 })
	field("count invalid", func(s *intel.Sighting) { s.Count = 0 })
	field("count invalid", func(s *intel.Sighting) { s.Count = 0 })
	field("first seen", func(s *intel.Sighting) { s.FirstSeen = s.FirstSeen.Add(-time.Second) })
	field("first seen after last", func(s *intel.Sighting) { s.FirstSeen = s.LastSeen.Add(time.Second) })
	field("last seen", func(s *intel.Sighting) { s.LastSeen = s.LastSeen.Add(-time.Second) })
	field("last seen ahead", func(s *intel.Sighting) { s.LastSeen = s.LastSeen.Add(time.Hour) })
	field("site", func(s *intel.Sighting) { s.Site = "ams1" })
	vs = append(vs,
		variant{"seq", seal(ka, intel.KindSighting, 2, t0, base)},
		variant{"sent", seal(ka, intel.KindSighting, 1, t0.Add(-time.Second), base)},
		variant{"sent stale", seal(ka, intel.KindSighting, 1, t0.Add(-24*time.Hour), base)},
		variant{"signer", seal(kb, intel.KindSighting, 1, t0, base)},
		variant{"signer not a member", seal(stranger, intel.KindSighting, 1, t0, base)},
		variant{"kind", seal(ka, intel.KindIndicator, 1, t0, base)},
		variant{"payload", seal(ka, intel.KindSighting, 1, t0, json.RawMessage(`{"x":1}`))},
	)

	// Every variant opened first by the warm cache, as gossip would (the
	// ones with a valid signature are remembered), and the good proofs.
	warm := [][]byte{pa, pb}
	for _, v := range vs {
		warm = append(warm, v.proof)
	}
	rs := memoReplicas(t, []ed25519.PrivateKey{ka, kb}, nil, warm...)
	legacy := func(c Command) []byte {
		body, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte{byte(CmdPutPolicy)}, body...)
	}
	at := t0
	block := func(v ...[]byte) Command {
		at = at.Add(time.Millisecond)
		return autoBlock(t, "203.0.113.7", at, time.Hour, v...)
	}
	entries := [][]byte{encode(t, block(pa, pb))}
	for _, v := range vs {
		entries = append(entries, encode(t, block(v.proof, pb)), legacy(block(pb, v.proof)))
	}
	entries = append(entries, encode(t, block(pa, pb)), legacy(block(pb, pa)))
	got := feed(t, rs, entries)
	if got[0] != "" || got[len(got)-1] != "" || got[len(got)-2] != "" {
		t.Fatalf("the untouched proofs were refused: %q, %q, %q", got[0], got[len(got)-2], got[len(got)-1])
	}
	accepted := map[string]bool{"seq": true, "sent": true, "detector": true, "technique": true, "severity": true, "confidence": true,
		"count": true, "first seen": true, "last seen": true, "site": true}
	for i, v := range vs {
		for j, res := range got[1+2*i : 3+2*i] {
			if (res == "") != accepted[v.name] {
				t.Fatalf("%s (encoding %d): %q", v.name, j, res)
			}
		}
	}
	// What the caches remember are the good proofs and the re-signed
	// variants; every FSM ended in the same state (feed).
	for _, name := range []string{"cold", "warm"} {
		if st := rs[name].f.verify.Stats(); st.Hits == 0 {
			t.Fatalf("%s cache: %+v, no hits", name, st)
		}
	}
}

// The proven block encoding: it round-trips, its proofs are copies, and
// every truncation, extension or lie in its lengths is refused as
// malformed, by DecodeCommand and by Apply, never a panic.
func TestProvenBlockEncoding(t *testing.T) {
	ka, kb := seededKey("memo-a"), seededKey("memo-b")
	ind := mustIndicator(t, "203.0.113.7")
	c := autoBlock(t, "203.0.113.7", t0, time.Hour, sealSighting(t, ka, 1, ind, t0), sealSighting(t, kb, 1, ind, t0))
	data := encode(t, c)
	if CommandType(data[0]) != CmdProvenBlock || bytes.Contains(data, []byte(`"proofs"`)) {
		t.Fatalf("put-policy written as %s", CommandType(data[0]))
	}
	d, err := DecodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != CmdPutPolicy || !d.At.Equal(c.At) || d.Policy.ID != c.Policy.ID || !slices.EqualFunc(d.Proofs, c.Proofs, bytes.Equal) {
		t.Fatalf("decoded %+v, encoded %+v", d, c)
	}
	d.Proofs[0][0] ^= 1
	if d2, _ := DecodeCommand(data); !bytes.Equal(d2.Proofs[0], c.Proofs[0]) {
		t.Fatal("the decoded proofs alias the entry")
	}
	// The legacy encoding (JSON, proofs in base64) decodes to the same.
	body, _ := json.Marshal(c)
	old, err := DecodeCommand(append([]byte{byte(CmdPutPolicy)}, body...))
	if err != nil || !slices.EqualFunc(old.Proofs, c.Proofs, bytes.Equal) || old.Policy.ID != c.Policy.ID || old.Type != CmdPutPolicy {
		t.Fatalf("legacy entry: %+v, %v", old, err)
	}

	rs := memoReplicas(t, []ed25519.PrivateKey{ka, kb}, nil)
	bad := [][]byte{{byte(CmdProvenBlock)}, append(bytes.Clone(data), 0)}
	for n := 1; n < len(data); n++ {
		bad = append(bad, data[:n])
	}
	// A count far beyond the bytes, a proof length beyond them, proofs
	// inside the JSON as well.
	n, k := binary.Uvarint(data[1:])
	after := 1 + k + int(n)
	lie := append(binary.AppendUvarint(bytes.Clone(data[:after]), 1<<40), data[after+1:]...)
	bad = append(bad, lie)
	inJSON, _ := json.Marshal(c)
	withProofs := binary.AppendUvarint([]byte{byte(CmdProvenBlock)}, uint64(len(inJSON)))
	withProofs = append(append(withProofs, inJSON...), 0)
	bad = append(bad, withProofs)
	for i, b := range bad {
		if _, err := DecodeCommand(b); !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("bad entry %d (%d bytes): %v", i, len(b), err)
		}
	}
	res := feed(t, rs, bad)
	for i, r := range res {
		if r == "" {
			t.Fatalf("bad entry %d applied", i)
		}
	}
	if n := rs["plain"].f.refused.snapshot()[[2]string{"put-policy", "malformed"}]; n != uint64(len(bad)) {
		t.Fatalf("%d malformed put-policy refusals, want %d: %v", n, len(bad), rs["plain"].f.refused.snapshot())
	}
	if res := feed(t, rs, [][]byte{data}); res[0] != "" {
		t.Fatal(res[0])
	}
}
