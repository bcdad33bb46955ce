package consensus

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// replica is an FSM fed raw entries as raft would.
type replica struct {
	f     *fsm
	index uint64
}

func (r *replica) apply(data []byte) string {
	r.index++
	if res := r.f.Apply(&raft.Log{Index: r.index, Term: 1, Type: raft.LogCommand, Data: data}); res != nil {
		return fmt.Sprint(res)
	}
	return ""
}

func encode(tb testing.TB, c Command) []byte {
	tb.Helper()
	b, err := c.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func flipBit(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i/8] ^= 1 << (i % 8)
	return out
}

// A proof the verify cache holds, altered by one bit anywhere, is refused
// by the FSM exactly as by an FSM without a cache: replicas without a
// cache, with a cache of their own and with a cache that gossip filled
// give the same answer to every entry and end in the same state.
func TestFSMVerifyCacheRefusesTamperedProof(t *testing.T) {
	ka, kb := seededKey("cache-a"), seededKey("cache-b")
	ind := mustIndicator(t, "203.0.113.7")
	pa, pb := sealSighting(t, ka, 1, ind, t0), sealSighting(t, kb, 1, ind, t0)

	entries := [][]byte{encode(t, Command{Type: CmdInit, At: t0.Add(-time.Hour), Init: testInit()}), encode(t, createTokenCmd(t, t0.Add(-time.Hour), 10))}
	for _, k := range []ed25519.PrivateKey{ka, kb} {
		id := intel.NodeID(k.Public().(ed25519.PublicKey))
		entries = append(entries, encode(t, joinAdmit(id, t0.Add(-time.Hour))))
	}
	good := len(entries)
	entries = append(entries, encode(t, autoBlock(t, "203.0.113.7", t0, time.Hour, pa, pb)))
	// One bit flipped in the first proof, in the header, the payload and
	// the signature, after its untouched bytes were verified.
	tampered := len(entries)
	for i := 0; i < 8*len(pa); i += 5 {
		entries = append(entries, encode(t, autoBlock(t, "203.0.113.7", t0.Add(time.Second), time.Hour, flipBit(pa, i), pb)))
	}
	// Both proofs moved to another address by one bit ('7' -> '6'): a
	// block of 203.0.113.6 that no one sighted.
	at := bytes.Index(pa, []byte("203.0.113.7")) + len("203.0.113.")
	bt := bytes.Index(pb, []byte("203.0.113.7")) + len("203.0.113.")
	entries = append(entries, encode(t, autoBlock(t, "203.0.113.6", t0.Add(2*time.Second), time.Hour, flipBit(pa, 8*at), flipBit(pb, 8*bt))))
	// And the untouched proofs still prove a block.
	entries = append(entries, encode(t, autoBlock(t, "203.0.113.7", t0.Add(3*time.Second), 2*time.Hour, pa, pb)))

	plain := &replica{f: newFSM(nil)}
	cold := &replica{f: newFSM(nil)}
	cold.f.verify = intel.NewVerifyCache(64)
	warm := &replica{f: newFSM(nil)}
	warm.f.verify = intel.NewVerifyCache(64)
	for _, p := range [][]byte{pa, pb} {
		if _, err := warm.f.verify.Open(p); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range entries {
		want := plain.apply(e)
		switch {
		case i >= tampered && i < len(entries)-1 && want == "":
			t.Fatalf("entry %d: a tampered proof was accepted without a cache", i)
		case (i < tampered || i == len(entries)-1) && want != "":
			t.Fatalf("entry %d: refused without a cache: %s", i, want)
		}
		for name, r := range map[string]*replica{"cold": cold, "warm": warm} {
			if got := r.apply(e); got != want {
				t.Fatalf("entry %d, %s cache: %q; without a cache: %q", i, name, got, want)
			}
		}
		if i == good {
			// The good entry's proofs are in both caches now.
			if st := cold.f.verify.Stats(); st.Len != 2 {
				t.Fatalf("cold cache after the good entry: %+v", st)
			}
		}
	}
	sp := snapshotBytes(t, plain.f)
	for name, r := range map[string]*replica{"cold": cold, "warm": warm} {
		if s := snapshotBytes(t, r.f); !bytes.Equal(s, sp) {
			t.Fatalf("%s cache: state differs\n%s\nwithout a cache:\n%s", name, s, sp)
		}
		st := r.f.verify.Stats()
		if st.Len != 2 || st.Hits == 0 {
			t.Fatalf("%s cache: %+v, want the two good proofs held and hits", name, st)
		}
	}
	if n := plain.f.refused.snapshot()[[2]string{"put-policy", "bad_signature"}]; n == 0 {
		t.Fatal("no bad_signature refusal counted")
	}
	if !bytes.Equal(fmt.Append(nil, cold.f.refused.snapshot()), fmt.Append(nil, plain.f.refused.snapshot())) {
		t.Fatalf("refusals differ: cold %v, plain %v", cold.f.refused.snapshot(), plain.f.refused.snapshot())
	}
}

// The leader's early check and Apply share the work: the check decodes
// nothing twice and verifies each proof once, and Apply only hashes them.
func TestPrecheckFillsVerifyCache(t *testing.T) {
	r := &replica{f: newFSM(nil)}
	r.f.verify = intel.NewVerifyCache(64)
	ka, kb := seededKey("cache-a"), seededKey("cache-b")
	r.apply(encode(t, Command{Type: CmdInit, At: t0.Add(-time.Hour), Init: testInit()}))
	r.apply(encode(t, createTokenCmd(t, t0.Add(-time.Hour), 10)))
	for _, k := range []ed25519.PrivateKey{ka, kb} {
		r.apply(encode(t, joinAdmit(intel.NodeID(k.Public().(ed25519.PublicKey)), t0.Add(-time.Hour))))
	}
	ind := mustIndicator(t, "203.0.113.9")
	data := encode(t, autoBlock(t, "203.0.113.9", t0, time.Hour, sealSighting(t, ka, 1, ind, t0), sealSighting(t, kb, 1, ind, t0)))
	cmd, err := DecodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.f.precheck(data, &cmd); err != nil {
		t.Fatal(err)
	}
	if st := r.f.verify.Stats(); st.Verified != 2 || st.Hits != 0 {
		t.Fatalf("after the early check: %+v, want 2 verified", st)
	}
	if res := r.apply(data); res != "" {
		t.Fatal(res)
	}
	if st := r.f.verify.Stats(); st.Verified != 2 || st.Hits != 2 {
		t.Fatalf("after Apply: %+v, want 2 verified, 2 hits", st)
	}
	// The early check of a tampered copy is refused as Apply refuses it.
	bad := flipBit(data, 8*len(data)-1) // the last proof's signature
	badCmd, err := DecodeCommand(bad)
	if err == nil {
		err = r.f.precheck(bad, &badCmd)
	}
	if err == nil {
		t.Fatal("a tampered entry passed the early check")
	}
	if res := r.apply(bad); res == "" {
		t.Fatal("a tampered entry was applied")
	}
}
