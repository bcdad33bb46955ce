package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// TestConformance runs the same behaviour tests against the in-memory and
// the on-disk store.
func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s *Store)
	}{
		{"EnvelopeRoundTrip", testEnvelopeRoundTrip},
		{"PutEnvelopeIdempotent", testPutEnvelopeIdempotent},
		{"PutEnvelopeConcurrentSameSeq", testPutEnvelopeConcurrent},
		{"PutEnvelopeRejects", testPutEnvelopeRejects},
		{"HighWater", testHighWater},
		{"ScanEnvelopes", testScanEnvelopes},
		{"SightingsFor", testSightingsFor},
		{"SightingsNewestFirst", testSightingsNewestFirst},
		{"Prune", testPrune},
		{"NextSeq", testNextSeq},
		{"Decisions", testDecisions},
		{"RaftLogStore", testRaftLogStore},
		{"RaftDeleteRange", testRaftDeleteRange},
		{"RaftStableStore", testRaftStableStore},
		{"Closed", testClosed},
	}
	for _, o := range openers() {
		t.Run(o.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.fn(t, o.open(t))
				})
			}
		})
	}
}

func testEnvelopeRoundTrip(t *testing.T, s *Store) {
	k := newKey(t)
	env := sighting(t, k, 7, mustIndicator(t, "203.0.113.7"), t0)
	if !put(t, s, env, t0.Add(2*time.Second)) {
		t.Fatal("first put reported not added")
	}
	raw, err := s.GetEnvelope(nodeID(k), 7)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, env.Raw) {
		t.Fatal("stored bytes differ from env.Raw")
	}
	if _, err := intel.Open(raw); err != nil {
		t.Fatalf("stored envelope no longer opens: %v", err)
	}
	if _, err := s.GetEnvelope(nodeID(k), 8); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing seq: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetEnvelope(nodeID(newKey(t)), 7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing origin: got %v, want ErrNotFound", err)
	}
	// A heartbeat is stored but not indexed as a sighting.
	if !put(t, s, heartbeat(t, k, 8), t0) {
		t.Fatal("heartbeat not added")
	}
	if n, err := s.CountEnvelopes(); err != nil || n != 2 {
		t.Fatalf("CountEnvelopes = %d, %v; want 2", n, err)
	}
	recs, err := s.Sightings(0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Sightings = %d records, %v; want 1", len(recs), err)
	}
	r := recs[0]
	if r.Origin != nodeID(k) || r.Seq != 7 || !r.Received.Equal(t0.Add(2*time.Second)) || !r.Sent.Equal(env.Time) ||
		r.Sighting.Indicator != mustIndicator(t, "203.0.113.7") || !r.Sighting.LastSeen.Equal(t0) || r.Sighting.Count != 5 {
		t.Fatalf("sighting record mismatch: %+v", r)
	}
}

func testPutEnvelopeIdempotent(t *testing.T, s *Store) {
	k := newKey(t)
	ind := mustIndicator(t, "198.51.100.1")
	env := sighting(t, k, 1, ind, t0)
	if !put(t, s, env, t0) {
		t.Fatal("first put not added")
	}
	for range 3 {
		if put(t, s, env, t0.Add(time.Hour)) {
			t.Fatal("repeated put reported added")
		}
	}
	// Another envelope with the same origin and seq (a replay with other
	// content) does not replace the first.
	other := sighting(t, k, 1, mustIndicator(t, "198.51.100.2"), t0)
	if put(t, s, other, t0) {
		t.Fatal("second envelope with the same origin+seq reported added")
	}
	raw, err := s.GetEnvelope(nodeID(k), 1)
	if err != nil || !bytes.Equal(raw, env.Raw) {
		t.Fatalf("first envelope replaced (err %v)", err)
	}
	if n, _ := s.CountEnvelopes(); n != 1 {
		t.Fatalf("CountEnvelopes = %d, want 1", n)
	}
	recs, err := s.SightingsFor(ind, time.Time{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("SightingsFor = %d, %v; want exactly one record", len(recs), err)
	}
	if recs, _ := s.SightingsFor(mustIndicator(t, "198.51.100.2"), time.Time{}); len(recs) != 0 {
		t.Fatalf("rejected duplicate was indexed: %+v", recs)
	}
}

func testPutEnvelopeConcurrent(t *testing.T, s *Store) {
	k := newKey(t)
	env := sighting(t, k, 1, mustIndicator(t, "198.51.100.9"), t0)
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	added := 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.PutEnvelope(env, t0)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				added++
				mu.Unlock()
			}
		}()
	}
	// Concurrent puts of other seqs of the same origin all land.
	for seq := uint64(2); seq <= 9; seq++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.PutEnvelope(heartbeat(t, k, seq), t0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if added != 1 {
		t.Fatalf("%d concurrent puts of one envelope reported added, want 1", added)
	}
	hw, err := s.HighWater()
	if err != nil || hw[nodeID(k)] != 9 {
		t.Fatalf("HighWater = %v, %v; want 9", hw, err)
	}
	if c, _ := s.CountEnvelopes(); c != 9 {
		t.Fatalf("CountEnvelopes = %d, want 9", c)
	}
}

func testPutEnvelopeRejects(t *testing.T, s *Store) {
	if _, err := s.PutEnvelope(nil, t0); err == nil {
		t.Error("nil envelope accepted")
	}
	k := newKey(t)
	// A sighting whose payload is not a valid sighting is refused.
	raw, err := intel.Seal(k, intel.KindSighting, 1, t0, []byte(`{"bogus":1}`))
	if err != nil {
		t.Fatal(err)
	}
	env, err := intel.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutEnvelope(env, t0); !errors.Is(err, intel.ErrMalformed) {
		t.Errorf("malformed sighting: got %v, want ErrMalformed", err)
	}
	if n, _ := s.CountEnvelopes(); n != 0 {
		t.Errorf("refused envelope stored: count %d", n)
	}
}

func testHighWater(t *testing.T, s *Store) {
	hw, err := s.HighWater()
	if err != nil || len(hw) != 0 {
		t.Fatalf("empty store HighWater = %v, %v", hw, err)
	}
	a, b := newKey(t), newKey(t)
	for _, seq := range []uint64{3, 1, 10, 2} {
		put(t, s, heartbeat(t, a, seq), t0)
	}
	put(t, s, heartbeat(t, b, 5), t0)
	hw, err = s.HighWater()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{nodeID(a): 10, nodeID(b): 5}
	if len(hw) != len(want) || hw[nodeID(a)] != 10 || hw[nodeID(b)] != 5 {
		t.Fatalf("HighWater = %v, want %v", hw, want)
	}
}

func testScanEnvelopes(t *testing.T, s *Store) {
	a, b := newKey(t), newKey(t)
	// Seqs chosen so that byte order and decimal order differ (255, 256).
	seqs := []uint64{256, 1, 255, 2, 1 << 40, 9}
	for _, seq := range seqs {
		put(t, s, heartbeat(t, a, seq), t0)
	}
	put(t, s, heartbeat(t, b, 3), t0)
	scan := func(origin string, after uint64) []uint64 {
		t.Helper()
		var got []uint64
		err := s.ScanEnvelopes(origin, after, func(raw []byte) error {
			env, err := intel.Open(raw)
			if err != nil {
				return err
			}
			if env.OriginID() != origin {
				return fmt.Errorf("scan of %s returned an envelope of %s", origin, env.OriginID())
			}
			got = append(got, env.Seq)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got, want := scan(nodeID(a), 0), []uint64{1, 2, 9, 255, 256, 1 << 40}; !slices.Equal(got, want) {
		t.Fatalf("scan from 0 = %v, want %v", got, want)
	}
	if got, want := scan(nodeID(a), 9), []uint64{255, 256, 1 << 40}; !slices.Equal(got, want) {
		t.Fatalf("scan after 9 = %v, want %v", got, want)
	}
	if got := scan(nodeID(a), 1<<40); len(got) != 0 {
		t.Fatalf("scan after the last = %v, want none", got)
	}
	if got := scan(nodeID(a), ^uint64(0)); len(got) != 0 {
		t.Fatalf("scan after max = %v, want none", got)
	}
	if got := scan(nodeID(newKey(t)), 0); len(got) != 0 {
		t.Fatalf("scan of an unknown origin = %v", got)
	}
	// An error from fn stops the scan and comes back unchanged.
	stop := errors.New("stop")
	calls := 0
	err := s.ScanEnvelopes(nodeID(a), 0, func([]byte) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("scan with failing fn: err %v after %d calls", err, calls)
	}
	// fn may call back into the store.
	err = s.ScanEnvelopes(nodeID(b), 0, func([]byte) error {
		_, err := s.PutEnvelope(heartbeat(t, b, 4), t0)
		return err
	})
	if err != nil {
		t.Fatalf("nested put: %v", err)
	}
}

func testSightingsFor(t *testing.T, s *Store) {
	ind := mustIndicator(t, "203.0.113.50")
	other := mustIndicator(t, "203.0.113.51")
	a, b, c := newKey(t), newKey(t), newKey(t)
	put(t, s, sighting(t, a, 1, ind, t0.Add(-2*time.Hour)), t0) // old
	put(t, s, sighting(t, b, 1, ind, t0.Add(-10*time.Minute)), t0)
	put(t, s, sighting(t, c, 1, ind, t0), t0)
	put(t, s, sighting(t, a, 2, other, t0), t0)
	// Before 1970 sorts before everything else.
	put(t, s, sighting(t, c, 2, ind, time.Unix(-1000, 0)), t0)

	origins := func(recs []SightingRecord) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.Origin)
		}
		return out
	}
	recs, err := s.SightingsFor(ind, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := origins(recs), []string{nodeID(b), nodeID(c)}; !slices.Equal(got, want) {
		t.Fatalf("SightingsFor last hour = %v, want %v (oldest first)", got, want)
	}
	for _, r := range recs {
		if r.Sighting.Indicator != ind || r.Sighting.LastSeen.Before(t0.Add(-time.Hour)) {
			t.Fatalf("record outside the query: %+v", r)
		}
	}
	// since is inclusive.
	recs, _ = s.SightingsFor(ind, t0)
	if got := origins(recs); !slices.Equal(got, []string{nodeID(c)}) {
		t.Fatalf("SightingsFor since=LastSeen = %v, want only c", got)
	}
	recs, _ = s.SightingsFor(ind, time.Time{})
	if len(recs) != 4 {
		t.Fatalf("SightingsFor all time = %d records, want 4", len(recs))
	}
	if recs[0].Origin != nodeID(c) || recs[0].Seq != 2 {
		t.Fatalf("pre-1970 sighting not first: %+v", recs[0])
	}
	recs, _ = s.SightingsFor(other, time.Time{})
	if got := origins(recs); !slices.Equal(got, []string{nodeID(a)}) || recs[0].Seq != 2 {
		t.Fatalf("SightingsFor other = %v", got)
	}
	if recs, _ := s.SightingsFor(mustIndicator(t, "evil.example"), time.Time{}); len(recs) != 0 {
		t.Fatalf("unknown indicator has sightings: %v", recs)
	}
	// An indicator whose key is a prefix of another's is kept apart.
	short, long := mustIndicator(t, "10.0.0.1"), mustIndicator(t, "10.0.0.10")
	put(t, s, sighting(t, a, 3, long, t0), t0)
	if recs, _ := s.SightingsFor(short, time.Time{}); len(recs) != 0 {
		t.Fatalf("sightings of %v returned for %v", long, short)
	}
}

func testSightingsNewestFirst(t *testing.T, s *Store) {
	k := newKey(t)
	ind := mustIndicator(t, "192.0.2.1")
	for i := range 5 {
		put(t, s, sighting(t, k, uint64(i+1), ind, t0), t0.Add(time.Duration(i)*time.Second))
	}
	recs, err := s.Sightings(3)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	if !slices.Equal(seqs, []uint64{5, 4, 3}) {
		t.Fatalf("Sightings(3) seqs = %v, want [5 4 3]", seqs)
	}
	if all, _ := s.Sightings(0); len(all) != 5 {
		t.Fatalf("Sightings(0) = %d records, want 5", len(all))
	}
}

func testPrune(t *testing.T, s *Store) {
	a, b := newKey(t), newKey(t)
	ind := mustIndicator(t, "192.0.2.77")
	// a's envelopes arrive an hour before b's.
	put(t, s, sighting(t, a, 1, ind, t0), t0.Add(-time.Hour))
	put(t, s, heartbeat(t, a, 2), t0.Add(-time.Hour))
	put(t, s, sighting(t, b, 1, ind, t0), t0)
	put(t, s, heartbeat(t, b, 2), t0)
	if n, err := s.Prune(t0.Add(-2 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("Prune before everything = %d, %v", n, err)
	}
	n, err := s.Prune(t0) // the cutoff is exclusive
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2", n, err)
	}
	if _, err := s.GetEnvelope(nodeID(a), 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pruned envelope still stored: %v", err)
	}
	if _, err := s.GetEnvelope(nodeID(b), 2); err != nil {
		t.Fatalf("kept envelope gone: %v", err)
	}
	if c, _ := s.CountEnvelopes(); c != 2 {
		t.Fatalf("CountEnvelopes after prune = %d, want 2", c)
	}
	recs, _ := s.SightingsFor(ind, time.Time{})
	if len(recs) != 1 || recs[0].Origin != nodeID(b) {
		t.Fatalf("SightingsFor after prune = %+v", recs)
	}
	if all, _ := s.Sightings(0); len(all) != 1 || all[0].Origin != nodeID(b) {
		t.Fatalf("Sightings after prune = %+v", all)
	}
	// High-water marks survive, and a pruned envelope can come back.
	if hw, _ := s.HighWater(); hw[nodeID(a)] != 2 {
		t.Fatalf("HighWater after prune = %v", hw)
	}
	if !put(t, s, heartbeat(t, a, 2), t0) {
		t.Fatal("re-put of a pruned envelope not added")
	}
	// Many at once, across several transactions.
	k := newKey(t)
	for i := range 1200 {
		put(t, s, heartbeat(t, k, uint64(i+1)), t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n, err := s.Prune(t0.Add(time.Hour)); err != nil || n != 1200+3 {
		t.Fatalf("bulk Prune = %d, %v; want %d", n, err, 1203)
	}
	if c, _ := s.CountEnvelopes(); c != 0 {
		t.Fatalf("CountEnvelopes after bulk prune = %d", c)
	}
}

func testNextSeq(t *testing.T, s *Store) {
	const workers, each = 4, 25
	var mu sync.Mutex
	seen := make(map[uint64]bool)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				n, err := s.NextSeq()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[n] {
					t.Errorf("NextSeq returned %d twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := uint64(1); i <= workers*each; i++ {
		if !seen[i] {
			t.Fatalf("NextSeq skipped %d", i)
		}
	}
	if n, _ := s.NextSeq(); n != workers*each+1 {
		t.Fatalf("NextSeq after %d calls = %d", workers*each, n)
	}
}

func testDecisions(t *testing.T, s *Store) {
	now := t0
	ind1, ind2, ind3 := mustIndicator(t, "203.0.113.1"), mustIndicator(t, "203.0.113.2"), mustIndicator(t, "203.0.113.3")
	live := intel.NewPolicy(intel.ActionBlock, ind1, "local", "local:x", now, time.Hour)
	forever := intel.NewPolicy(intel.ActionBlock, ind2, "local", "local:x", now, 0)
	expired := intel.NewPolicy(intel.ActionBlock, ind3, "local", "local:x", now.Add(-2*time.Hour), time.Hour)
	for _, p := range []intel.Policy{live, forever, expired} {
		if err := s.PutDecision(p); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(ps []intel.Policy) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	got, err := s.Decisions(now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{live.ID, forever.ID}
	slices.Sort(want)
	if !slices.Equal(ids(got), want) {
		t.Fatalf("Decisions = %v, want %v", ids(got), want)
	}
	for _, p := range got {
		if p.ID == live.ID && (!p.ExpiresAt.Equal(live.ExpiresAt) || p.Reason != "local" || p.Indicator != ind1) {
			t.Fatalf("decision did not round-trip: %+v", p)
		}
	}
	// Renewing an expired decision brings it back.
	renewed := intel.NewPolicy(intel.ActionBlock, ind3, "again", "local:x", now, time.Hour)
	if err := s.PutDecision(renewed); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Decisions(now)
	if len(got) != 3 {
		t.Fatalf("after renewal: %v", ids(got))
	}
	// Later, the hour-long ones lapse.
	got, _ = s.Decisions(now.Add(2 * time.Hour))
	if !slices.Equal(ids(got), []string{forever.ID}) {
		t.Fatalf("Decisions two hours later = %v, want only %s", ids(got), forever.ID)
	}
	if err := s.DeleteDecision(forever.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDecision("never-stored"); err != nil {
		t.Fatalf("deleting an unknown decision: %v", err)
	}
	if got, _ := s.Decisions(now); len(got) != 0 {
		t.Fatalf("after delete and lazy expiry: %v", ids(got))
	}
	if err := s.PutDecision(intel.Policy{}); err == nil {
		t.Fatal("policy without ID accepted")
	}
}

func testRaftLogStore(t *testing.T, s *Store) {
	r := s.RaftStore()
	for _, f := range []func() (uint64, error){r.FirstIndex, r.LastIndex} {
		if i, err := f(); err != nil || i != 0 {
			t.Fatalf("empty log index = %d, %v; want 0", i, err)
		}
	}
	var l raft.Log
	if err := r.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on empty store: %v, want raft.ErrLogNotFound", err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	logs := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("cfg"), AppendedAt: at},
		{Index: 2, Term: 1, Type: raft.LogNoop},
		{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte("ext"), AppendedAt: at.Add(time.Second)},
		{Index: 256, Term: 3, Type: raft.LogBarrier, Data: bytes.Repeat([]byte{0xff}, 1000)},
	}
	if err := r.StoreLogs(logs[:3]); err != nil {
		t.Fatal(err)
	}
	if err := r.StoreLog(logs[3]); err != nil {
		t.Fatal(err)
	}
	if err := r.StoreLogs(nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range logs {
		var got raft.Log
		if err := r.GetLog(want.Index, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", want.Index, err)
		}
		assertLogEqual(t, &got, want)
	}
	if i, _ := r.FirstIndex(); i != 1 {
		t.Fatalf("FirstIndex = %d, want 1", i)
	}
	if i, _ := r.LastIndex(); i != 256 {
		t.Fatalf("LastIndex = %d, want 256", i)
	}
	if err := r.GetLog(4, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog in a gap: %v", err)
	}
	// Overwriting an index replaces the entry.
	if err := r.StoreLog(&raft.Log{Index: 2, Term: 9, Data: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if err := r.GetLog(2, &l); err != nil || l.Term != 9 || string(l.Data) != "new" {
		t.Fatalf("overwritten entry: %+v, %v", l, err)
	}
}

func assertLogEqual(t *testing.T, got, want *raft.Log) {
	t.Helper()
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
		!bytes.Equal(got.Data, want.Data) || (got.Data == nil) != (want.Data == nil) ||
		!bytes.Equal(got.Extensions, want.Extensions) || (got.Extensions == nil) != (want.Extensions == nil) ||
		!got.AppendedAt.Equal(want.AppendedAt) {
		t.Fatalf("log %d: got %+v, want %+v", want.Index, got, want)
	}
	if !want.AppendedAt.IsZero() {
		_, go_ := got.AppendedAt.Zone()
		_, wo := want.AppendedAt.Zone()
		if go_ != wo {
			t.Fatalf("log %d: AppendedAt zone offset %d, want %d", want.Index, go_, wo)
		}
	}
}

func storeRange(t *testing.T, r *RaftStore, from, to uint64) {
	t.Helper()
	var batch []*raft.Log
	for i := from; i <= to; i++ {
		batch = append(batch, &raft.Log{Index: i, Term: 1, Data: []byte(fmt.Sprint(i))})
		if len(batch) == 512 || i == to {
			if err := r.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
}

func testRaftDeleteRange(t *testing.T, s *Store) {
	r := s.RaftStore()
	const n = 20000 // several delete chunks
	storeRange(t, r, 1, n)
	check := func(first, last uint64) {
		t.Helper()
		f, err1 := r.FirstIndex()
		l, err2 := r.LastIndex()
		if err1 != nil || err2 != nil || f != first || l != last {
			t.Fatalf("after delete: first %d last %d (%v %v); want %d %d", f, l, err1, err2, first, last)
		}
	}
	// Compaction: from the front.
	if err := r.DeleteRange(1, 12345); err != nil {
		t.Fatal(err)
	}
	check(12346, n)
	var l raft.Log
	if err := r.GetLog(12345, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("deleted entry still readable: %v", err)
	}
	if err := r.GetLog(12346, &l); err != nil || string(l.Data) != "12346" {
		t.Fatalf("first kept entry: %+v %v", l, err)
	}
	// Conflicting suffix: from the back.
	if err := r.DeleteRange(15000, n); err != nil {
		t.Fatal(err)
	}
	check(12346, 14999)
	// Empty and inverted ranges are no-ops.
	if err := r.DeleteRange(30000, 40000); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteRange(13000, 12000); err != nil {
		t.Fatal(err)
	}
	check(12346, 14999)
	// Everything, as raft does after restoring a snapshot.
	if err := r.DeleteRange(0, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	check(0, 0)
	// Stable values are untouched by log deletion.
	if err := r.SetUint64([]byte("CurrentTerm"), 4); err != nil {
		t.Fatal(err)
	}
	storeRange(t, r, 1, 3)
	if err := r.DeleteRange(0, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if v, err := r.GetUint64([]byte("CurrentTerm")); err != nil || v != 4 {
		t.Fatalf("stable value after log deletion = %d, %v", v, err)
	}
}

func testRaftStableStore(t *testing.T, s *Store) {
	r := s.RaftStore()
	if v, err := r.Get([]byte("missing")); v != nil || err != nil {
		t.Fatalf("Get(missing) = %v, %v; want nil, nil", v, err)
	}
	if v, err := r.GetUint64([]byte("missing")); v != 0 || err != nil {
		t.Fatalf("GetUint64(missing) = %d, %v; want 0, nil", v, err)
	}
	val := []byte("candidate")
	if err := r.Set([]byte("LastVoteCand"), val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store must have copied it
	if v, err := r.Get([]byte("LastVoteCand")); err != nil || string(v) != "candidate" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	for _, n := range []uint64{0, 1, 1 << 63, ^uint64(0)} {
		if err := r.SetUint64([]byte("CurrentTerm"), n); err != nil {
			t.Fatal(err)
		}
		if v, err := r.GetUint64([]byte("CurrentTerm")); err != nil || v != n {
			t.Fatalf("GetUint64 = %d, %v; want %d", v, err, n)
		}
	}
	// Stable keys do not collide with envelopes, decisions or the log.
	if err := r.Set([]byte("seq"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.NextSeq(); err != nil || n != 1 {
		t.Fatalf("NextSeq after a stable Set = %d, %v", n, err)
	}
	if i, _ := r.LastIndex(); i != 0 {
		t.Fatalf("stable keys seen as log entries: LastIndex %d", i)
	}
}

func testClosed(t *testing.T, s *Store) {
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	k := newKey(t)
	r := s.RaftStore()
	var l raft.Log
	for name, err := range map[string]error{
		"PutEnvelope":    func() error { _, err := s.PutEnvelope(heartbeat(t, k, 1), t0); return err }(),
		"GetEnvelope":    func() error { _, err := s.GetEnvelope(nodeID(k), 1); return err }(),
		"HighWater":      func() error { _, err := s.HighWater(); return err }(),
		"ScanEnvelopes":  s.ScanEnvelopes(nodeID(k), 0, func([]byte) error { return nil }),
		"SightingsFor":   func() error { _, err := s.SightingsFor(mustIndicator(t, "1.2.3.4"), t0); return err }(),
		"Sightings":      func() error { _, err := s.Sightings(1); return err }(),
		"CountEnvelopes": func() error { _, err := s.CountEnvelopes(); return err }(),
		"Prune":          func() error { _, err := s.Prune(t0); return err }(),
		"NextSeq":        func() error { _, err := s.NextSeq(); return err }(),
		"PutDecision":    s.PutDecision(intel.Policy{ID: "x"}),
		"Decisions":      func() error { _, err := s.Decisions(t0); return err }(),
		"DeleteDecision": s.DeleteDecision("x"),
		"FirstIndex":     func() error { _, err := r.FirstIndex(); return err }(),
		"LastIndex":      func() error { _, err := r.LastIndex(); return err }(),
		"GetLog":         r.GetLog(1, &l),
		"StoreLogs":      r.StoreLogs([]*raft.Log{{Index: 1}}),
		"DeleteRange":    r.DeleteRange(1, 2),
		"Set":            r.Set([]byte("k"), []byte("v")),
		"Get":            func() error { _, err := r.Get([]byte("k")); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
