package certify

import (
	"crypto/ed25519"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

var (
	kA, kB, kC, kD, kE = key("a"), key("b"), key("c"), key("d"), key("e")
	kOut               = key("outsider")
)

func TestEdgeAppliesWhatAMajorityCertifies(t *testing.T) {
	c := newChain()
	c.commands(12)
	e, s := newEdge(t, votersOf(kA, kB, kC), nil)
	feed(e, c.entries)
	wantApplied(t, e, s, c, 0)
	if err := e.AddCert(c.cert(t, kA, c.last())); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, e, s, c, 0) // one of three
	if err := e.AddCert(c.cert(t, kB, c.last())); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, e, s, c, c.last())
	if n := len(e.Counts()); n != 0 {
		t.Errorf("counts %v, want none", e.Counts())
	}
	if e.Pending() != 0 {
		t.Errorf("%d entries pending after applying all", e.Pending())
	}
}

// A minority of the voters certifies nothing, whatever they sign.
func TestEdgeMinorityAppliesNothing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		voters  []ed25519.PrivateKey
		signers []ed25519.PrivateKey
	}{
		{"1 of 3", []ed25519.PrivateKey{kA, kB, kC}, []ed25519.PrivateKey{kA}},
		{"2 of 5", []ed25519.PrivateKey{kA, kB, kC, kD, kE}, []ed25519.PrivateKey{kA, kB}},
		{"2 of 4", []ed25519.PrivateKey{kA, kB, kC, kD}, []ed25519.PrivateKey{kC, kD}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChain()
			c.commands(8)
			e, s := newEdge(t, votersOf(tc.voters...), nil)
			feed(e, c.entries)
			for _, k := range tc.signers {
				for _, en := range c.entries { // every index, every signer
					if err := e.AddCert(c.cert(t, k, en.Index)); err != nil {
						t.Fatal(err)
					}
				}
			}
			wantApplied(t, e, s, c, 0)
			// One more voter makes the majority.
			if err := e.AddCert(c.cert(t, tc.voters[len(tc.voters)-1], c.last())); err != nil && len(tc.voters) != 4 {
				t.Fatal(err)
			}
			if len(tc.voters) != 4 {
				wantApplied(t, e, s, c, c.last())
			}
		})
	}
}

// Voters sign different indexes; each vouches for the entries up to its
// index, so the edge applies up to the highest index a majority covers.
func TestEdgeAppliesWhatTheMajorityCovers(t *testing.T) {
	c := newChain()
	c.commands(10)
	i3, i6, i9 := c.entries[3].Index, c.entries[6].Index, c.entries[9].Index
	e, s := newEdge(t, votersOf(kA, kB, kC), nil)
	for _, ct := range []Cert{c.cert(t, kA, i9), c.cert(t, kB, i6), c.cert(t, kC, i3)} {
		if err := e.AddCert(ct); err != nil {
			t.Fatal(err)
		}
	}
	feed(e, c.entries)
	wantApplied(t, e, s, c, i6)
	if err := e.AddCert(c.cert(t, kC, i9)); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, e, s, c, i9)
}

// Entries and certificates arrive in any order, and entries twice; the
// edge applies them in chain order, each once.
func TestEdgeAnyOrder(t *testing.T) {
	c := newChain()
	c.commands(40)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		e, s := newEdge(t, votersOf(kA, kB, kC), nil)
		var steps []func()
		for _, en := range c.entries {
			steps = append(steps, func() { _ = e.AddEntry(en) }, func() { _ = e.AddEntry(en) })
		}
		for _, k := range []ed25519.PrivateKey{kA, kB, kC} {
			for _, p := range []int{9, 19, 39} {
				ct := c.cert(t, k, c.entries[p].Index)
				steps = append(steps, func() { _ = e.AddCert(ct) })
			}
		}
		rng.Shuffle(len(steps), func(i, j int) { steps[i], steps[j] = steps[j], steps[i] })
		for _, f := range steps {
			f()
		}
		wantApplied(t, e, s, c, c.last())
		if cs := e.Counts(); cs[ReasonChainMismatch]+cs[ReasonBadLink]+cs[ReasonDiscarded] != 0 {
			t.Fatalf("round %d: honest input refused: %v", round, cs)
		}
	}
}

// Each refusal: the input changes nothing applied and is counted under
// its reason.
func TestEdgeRefusals(t *testing.T) {
	c := newChain()
	c.commands(10)
	last := c.last()
	for _, tc := range []struct {
		name   string
		reason string
		run    func(t *testing.T, e *Edge) error // returns the refusal to check
		// applied is how far the edge gets once the majority's honest
		// certificates for the last index arrive.
		applied uint64
	}{
		{"forged entry", ReasonChainMismatch, func(t *testing.T, e *Edge) error {
			es := slices.Clone(c.entries)
			es[4].Data = []byte("block 0.0.0.0/0")
			feed(e, es)
			return certs(t, e, c, last, kA, kB)
		}, 0},
		{"reordered entries", ReasonChainMismatch, func(t *testing.T, e *Edge) error {
			es := slices.Clone(c.entries)
			es[3].Data, es[4].Data = es[4].Data, es[3].Data
			feed(e, es)
			return certs(t, e, c, last, kA, kB)
		}, 0},
		{"altered term", ReasonChainMismatch, func(t *testing.T, e *Edge) error {
			es := slices.Clone(c.entries)
			es[2].Term = 7
			feed(e, es)
			return certs(t, e, c, last, kA, kB)
		}, 0},
		{"entry skipped over", ReasonBadLink, func(t *testing.T, e *Edge) error {
			feed(e, c.entries[:5])
			bad := c.entries[6]
			bad.Prev = c.entries[3].Index // skips entry 4 held
			return e.AddEntry(bad)
		}, 0},
		{"replayed entry", ReasonOld, func(t *testing.T, e *Edge) error {
			feed(e, c.entries)
			if err := certs(t, e, c, last, kA, kB); err != nil {
				t.Fatal(err)
			}
			return e.AddEntry(c.entries[3])
		}, last},
		{"replayed certificate", ReasonOld, func(t *testing.T, e *Edge) error {
			feed(e, c.entries)
			if err := certs(t, e, c, last, kA, kB); err != nil {
				t.Fatal(err)
			}
			return e.AddCert(c.cert(t, kC, c.entries[5].Index))
		}, last},
		{"duplicate certificate", ReasonDuplicate, func(t *testing.T, e *Edge) error {
			if err := e.AddCert(c.cert(t, kA, last)); err != nil {
				t.Fatal(err)
			}
			return e.AddCert(c.cert(t, kA, last))
		}, 0},
		{"conflicting entry", ReasonConflictingEntry, func(t *testing.T, e *Edge) error {
			feed(e, c.entries[:3])
			bad := c.entries[2]
			bad.Data = []byte("other")
			return e.AddEntry(bad)
		}, 0},
		{"wrong mesh", ReasonWrongMesh, func(t *testing.T, e *Edge) error {
			p := c.pos(t, last)
			ct, _ := SignCert(kA, "fedcba9876543210fedcba9876543210", last, 1, c.hashes[p])
			return e.AddCert(ct)
		}, 0},
		{"bad signature", ReasonBadSignature, func(t *testing.T, e *Edge) error {
			ct := c.cert(t, kA, last)
			ct.Sig[10] ^= 1
			return e.AddCert(ct)
		}, 0},
		{"signature over another index", ReasonBadSignature, func(t *testing.T, e *Edge) error {
			ct := c.cert(t, kA, last)
			ct.Index--
			return e.AddCert(ct)
		}, 0},
		{"not a voter", ReasonNotVoter, func(t *testing.T, e *Edge) error {
			feed(e, c.entries)
			return e.AddCert(c.cert(t, kOut, last))
		}, 0},
		{"entry too far ahead", ReasonTooFarAhead, func(t *testing.T, e *Edge) error {
			en := Entry{Index: 1 << 20, Prev: 1<<20 - 1, Term: 1, Type: raft.LogCommand}
			return e.AddEntry(en)
		}, 0},
		{"certificate too far ahead", ReasonTooFarAhead, func(t *testing.T, e *Edge) error {
			ct, _ := SignCert(kA, testMesh, 1<<20, 1, Hash{})
			return e.AddCert(ct)
		}, 0},
		{"malformed configuration", ReasonMalformed, func(t *testing.T, e *Edge) error {
			return e.AddEntry(Entry{Index: last + 5, Prev: last, Term: 1, Type: raft.LogConfiguration, Data: []byte{0xc1, 0xff}})
		}, 0},
		{"entry of a type the FSM never sees", ReasonMalformed, func(t *testing.T, e *Edge) error {
			return e.AddEntry(Entry{Index: 3, Prev: 2, Term: 1, Type: raft.LogNoop})
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, s := newEdge(t, votersOf(kA, kB, kC), func(c *Config) { c.Window = 1000 })
			err := tc.run(t, e)
			if tc.reason == ReasonChainMismatch {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				wantReason(t, err, tc.reason)
			}
			if e.Counts()[tc.reason] == 0 {
				t.Errorf("reason %s not counted: %v", tc.reason, e.Counts())
			}
			wantApplied(t, e, s, c, tc.applied)
		})
	}
}

// certs offers the certificates of keys for index.
func certs(t *testing.T, e *Edge, c *chain, index uint64, keys ...ed25519.PrivateKey) error {
	t.Helper()
	for _, k := range keys {
		if err := e.AddCert(c.cert(t, k, index)); err != nil {
			return err
		}
	}
	return nil
}

// A missing entry blocks what follows; the edge names the gap, and
// applies everything once it arrives.
func TestEdgeMissingEntry(t *testing.T) {
	c := newChain()
	c.commands(9)
	e, s := newEdge(t, votersOf(kA, kB, kC), nil)
	missing := c.entries[4]
	for i, en := range c.entries {
		if i != 4 {
			if err := e.AddEntry(en); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := certs(t, e, c, c.last(), kA, kB, kC); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, e, s, c, 0)
	g, ok := e.NextGap()
	if !ok || g.From != c.entries[3].Index+1 || g.To != missing.Index {
		t.Fatalf("gap %+v %v, want %d..%d", g, ok, c.entries[3].Index+1, missing.Index)
	}
	if err := e.AddEntry(missing); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, e, s, c, c.last())
	if _, ok := e.NextGap(); ok {
		t.Error("a gap reported after applying everything")
	}
}

// Certificates ahead of the entries held name the entries to fetch.
func TestEdgeGapUpToCertified(t *testing.T) {
	c := newChain()
	c.commands(6)
	e, s := newEdge(t, votersOf(kA, kB, kC), nil)
	feed(e, c.entries[:2])
	if err := certs(t, e, c, c.last(), kA, kB); err != nil {
		t.Fatal(err)
	}
	g, ok := e.NextGap()
	if !ok || g.From != c.entries[1].Index+1 || g.To != c.last() {
		t.Fatalf("gap %+v %v, want %d..%d", g, ok, c.entries[1].Index+1, c.last())
	}
	feed(e, c.entries[2:])
	wantApplied(t, e, s, c, c.last())
}

// A compromised voter signs a forged chain with its real key, and the
// forged entries reach the edge first: nothing is applied; the honest
// majority's certificates disown the forged entries, which are dropped,
// and the honest entries are applied once fetched again.
func TestEdgeCompromisedVoter(t *testing.T) {
	honest := newChain()
	honest.commands(8)
	forged := newChain()
	for i, en := range honest.entries {
		data := en.Data
		if i == 5 {
			data = []byte("block 10.0.0.0/8")
		}
		forged.add(en.Type, data, en.Index-en.Prev-1)
	}
	last := honest.last()
	e, s := newEdge(t, votersOf(kA, kB, kC), nil)
	feed(e, forged.entries)
	if err := e.AddCert(forged.cert(t, kC, last)); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, e, s, honest, 0)
	err := e.AddCert(honest.cert(t, kA, last))
	wantReason(t, err, ReasonEquivocation)
	if ev := e.Evidence(); len(ev) != 1 || ev[0].A.SignerID() != idOf(kC) || ev[0].B.SignerID() != idOf(kA) {
		t.Fatalf("evidence %+v", ev)
	}
	wantApplied(t, e, s, honest, 0)
	wantReason(t, e.AddCert(honest.cert(t, kB, last)), ReasonEquivocation)
	wantApplied(t, e, s, honest, 0)
	cs := e.Counts()
	if cs[ReasonChainMismatch] < 2 || cs[ReasonDiscarded] != uint64(len(forged.entries)) {
		t.Fatalf("counts %v: want two mismatches and %d entries discarded", cs, len(forged.entries))
	}
	if g, ok := e.NextGap(); !ok || g.From != 1 || g.To != last {
		t.Fatalf("gap %+v %v, want 1..%d", g, ok, last)
	}
	feed(e, honest.entries)
	wantApplied(t, e, s, honest, last)
}

// The voter set changes at a configuration entry: the entries up to it
// are certified by the old set, those after by the new one.
func TestEdgeVoterSetChange(t *testing.T) {
	c := newChain()
	c.commands(4)
	cfgIdx := c.add(raft.LogConfiguration, configData(kA, kB, kD), 0) // C out, D in
	c.commands(4)
	last := c.last()

	t.Run("new voters alone cannot certify across the boundary", func(t *testing.T) {
		e, s := newEdge(t, votersOf(kA, kB, kC), nil)
		feed(e, c.entries)
		// C is a voter up to cfgIdx only, D after it: together they are
		// no majority of the old set for the entries up to cfgIdx.
		wantReason(t, e.AddCert(c.cert(t, kC, last)), ReasonNotVoter)
		if err := certs(t, e, c, cfgIdx, kC); err != nil {
			t.Fatal(err)
		}
		if err := certs(t, e, c, last, kD); err != nil {
			t.Fatal(err)
		}
		wantApplied(t, e, s, c, 0)
		// A (in both sets) completes the old set's majority for the
		// entries up to the configuration, and with D the new one's.
		if err := certs(t, e, c, last, kA); err != nil {
			t.Fatal(err)
		}
		wantApplied(t, e, s, c, last)
		if got := e.Applied().Voters; !got.Equal(votersOf(kA, kB, kD)) {
			t.Fatalf("voters after the change %v", got)
		}
	})
	t.Run("a removed voter no longer counts", func(t *testing.T) {
		e, s := newEdge(t, votersOf(kA, kB, kC), nil)
		feed(e, c.entries)
		if err := certs(t, e, c, last, kA); err != nil {
			t.Fatal(err)
		}
		if err := certs(t, e, c, cfgIdx, kC); err != nil {
			t.Fatal(err)
		}
		// A and C are the old majority up to the configuration; after it
		// only A of {A, B, D} vouches.
		wantApplied(t, e, s, c, cfgIdx)
		// C's certificate for a later index is now refused outright.
		c.commands(1)
		feed(e, c.entries[len(c.entries)-1:])
		err := e.AddCert(c.cert(t, kC, c.last()))
		wantReason(t, err, ReasonNotVoter)
		if err := certs(t, e, c, last, kD); err != nil {
			t.Fatal(err)
		}
		wantApplied(t, e, s, c, last)
		c.entries, c.hashes = c.entries[:len(c.entries)-1], c.hashes[:len(c.hashes)-1]
		c.next--
	})
	t.Run("a future voter's certificate waits for the configuration", func(t *testing.T) {
		e, s := newEdge(t, votersOf(kA, kB, kC), nil)
		// D's certificate arrives before the entries: D is no voter yet
		// as far as the edge knows; it waits, and counts once the
		// configuration naming D is held.
		if err := certs(t, e, c, last, kD, kA); err != nil {
			t.Fatal(err)
		}
		if e.Stats().Certs != 2 {
			t.Fatalf("%d certificates held", e.Stats().Certs)
		}
		if err := certs(t, e, c, cfgIdx, kB); err != nil {
			t.Fatal(err)
		}
		feed(e, c.entries)
		wantApplied(t, e, s, c, last)
		// An outsider's certificate waits the same way, then is refused.
		f, _ := newEdge(t, votersOf(kA, kB, kC), nil)
		if err := f.AddCert(c.cert(t, kOut, last)); err != nil {
			t.Fatal(err)
		}
		feed(f, c.entries)
		if f.Counts()[ReasonNotVoter] != 1 || f.Stats().Certs != 0 {
			t.Fatalf("counts %v, stats %+v", f.Counts(), f.Stats())
		}
	})
	t.Run("a forged configuration does not make its voters", func(t *testing.T) {
		f := newChain()
		f.commands(2)
		f.add(raft.LogConfiguration, configData(kOut, kD, kE), 0) // the attacker's set
		f.commands(3)
		e, s := newEdge(t, votersOf(kA, kB, kC), nil)
		feed(e, f.entries)
		// The forged set signs: D and E pass the admission check (a held
		// configuration names them) but count for nothing.
		if err := certs(t, e, f, f.last(), kOut, kD, kE); err != nil {
			t.Fatal(err)
		}
		wantApplied(t, e, s, f, 0)
	})
}

// Installing a certified snapshot, then going on with entries.
func TestEdgeInstallSnapshot(t *testing.T) {
	c := newChain()
	c.commands(20)
	at := c.entries[11]
	state := []byte("the state after entry 11")
	manifest := func(keys ...ed25519.PrivateKey) Manifest {
		m := NewManifest(testMesh, at.Index, at.Term, c.hashes[11], votersOf(kA, kB, kC), state)
		for _, k := range keys {
			if err := m.Sign(k); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	newSnapEdge := func() (*Edge, *sink, *[]byte) {
		var restored []byte
		e, s := newEdge(t, votersOf(kA, kB, kC), func(cfg *Config) {
			cfg.Restore = func(b []byte) error { restored = slices.Clone(b); return nil }
		})
		return e, s, &restored
	}
	for _, tc := range []struct {
		name   string
		m      Manifest
		state  []byte
		reason string
	}{
		{"one of three", manifest(kA), state, ReasonMinority},
		{"one voter twice", manifest(kA, kA), state, ReasonDuplicateSigner},
		{"outsider", manifest(kA, kOut), state, ReasonNotVoter},
		{"other bytes", manifest(kA, kB), []byte("the state after entry 12"), ReasonSnapshotHash},
		{"bad signature", func() Manifest { m := manifest(kA, kB); m.Sigs[1].Sig[0] ^= 1; return m }(), state, ReasonBadSignature},
		{"altered after signing", func() Manifest { m := manifest(kA, kB); m.Index++; return m }(), state, ReasonBadSignature},
		{"wrong mesh", func() Manifest { m := manifest(kA, kB); m.Mesh = "x"; return m }(), state, ReasonWrongMesh},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, s, restored := newSnapEdge()
			wantReason(t, e.Install(tc.m, tc.state), tc.reason)
			if *restored != nil || e.Applied().Index != 0 || len(s.got) != 0 {
				t.Fatal("a refused snapshot changed the edge")
			}
			if e.Counts()[tc.reason] != 1 {
				t.Errorf("counts %v", e.Counts())
			}
		})
	}
	t.Run("majority", func(t *testing.T) {
		e, s, restored := newSnapEdge()
		feed(e, c.entries[:3]) // what it had before going down
		feed(e, c.entries[14:])
		if err := e.Install(manifest(kA, kC), state); err != nil {
			t.Fatal(err)
		}
		if string(*restored) != string(state) || e.Applied().Index != at.Index || e.Applied().Hash != c.hashes[11] {
			t.Fatalf("after install: applied %+v", e.Applied())
		}
		wantReason(t, e.Install(manifest(kA, kC), state), ReasonOld)
		if g, ok := e.NextGap(); !ok || g.From != at.Index+1 || g.To != c.entries[14].Prev {
			t.Fatalf("gap %+v %v", g, ok)
		}
		feed(e, c.entries[12:14])
		if err := certs(t, e, c, c.last(), kB, kC); err != nil {
			t.Fatal(err)
		}
		if e.Applied().Index != c.last() || len(s.got) != len(c.entries)-12 || !s.got[0].same(&c.entries[12]) {
			t.Fatalf("applied %d entries up to %d after the snapshot", len(s.got), e.Applied().Index)
		}
	})
}

// Bounded buffers: beyond MaxPending the entries furthest ahead go.
func TestEdgeBounds(t *testing.T) {
	c := newChain()
	c.commands(10)
	e, s := newEdge(t, votersOf(kA, kB, kC), func(cfg *Config) { cfg.MaxPending = 4; cfg.MaxCertsPerSigner = 2 })
	for i := len(c.entries) - 1; i >= 0; i-- { // last first: each newcomer is nearer
		_ = e.AddEntry(c.entries[i])
	}
	if e.Pending() != 4 || e.Counts()[ReasonBufferFull] != 6 {
		t.Fatalf("pending %d, counts %v", e.Pending(), e.Counts())
	}
	err := e.AddEntry(c.entries[len(c.entries)-1])
	wantReason(t, err, ReasonBufferFull)
	for _, p := range []int{0, 1, 2, 3} {
		if err := certs(t, e, c, c.entries[p].Index, kA); err != nil {
			t.Fatal(err)
		}
	}
	if e.Counts()[ReasonCertEvicted] != 2 {
		t.Fatalf("counts %v", e.Counts())
	}
	if err := certs(t, e, c, c.entries[3].Index, kB); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, e, s, c, c.entries[3].Index)
	feed(e, c.entries[4:8])
	if err := certs(t, e, c, c.entries[7].Index, kA, kB); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, e, s, c, c.entries[7].Index)
	feed(e, c.entries[8:])
	if err := certs(t, e, c, c.last(), kA, kB); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, e, s, c, c.last())
}

// A snapshot whose voter set differs from the one the edge trusts needs
// a majority of both: a new set cannot vouch for itself.
func TestEdgeInstallAcrossVoterChange(t *testing.T) {
	c := newChain()
	c.commands(4)
	c.add(raft.LogConfiguration, configData(kA, kB, kD), 0)
	state := []byte("state with D a voter")
	mk := func(keys ...ed25519.PrivateKey) Manifest {
		m := NewManifest(testMesh, c.last(), 1, c.hashes[len(c.hashes)-1], votersOf(kA, kB, kD), state)
		for _, k := range keys {
			if err := m.Sign(k); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	var restored []byte
	e, _ := newEdge(t, votersOf(kA, kB, kC), func(cfg *Config) {
		cfg.Restore = func(b []byte) error { restored = b; return nil }
	})
	// A and D are a majority of the new set, not of the trusted one.
	wantReason(t, e.Install(mk(kA, kD), state), ReasonMinority)
	// C and D: one of each.
	wantReason(t, e.Install(mk(kC, kD), state), ReasonMinority)
	if restored != nil {
		t.Fatal("restored on a minority")
	}
	if err := e.Install(mk(kA, kB), state); err != nil {
		t.Fatal(err)
	}
	if a := e.Applied(); a.Index != c.last() || !a.Voters.Equal(votersOf(kA, kB, kD)) {
		t.Fatalf("after install %+v", a)
	}
}
