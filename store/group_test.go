package store

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/meshward/meshward/intel"
)

// groupOpeners are the stores the group-commit tests run against: in
// memory, on disk with synced writes, and on disk encrypted at rest.
func groupOpeners() []opener {
	return append(openers(), opener{"disk-aes", func(t testing.TB) *Store {
		return openStore(t, encOptions(t.(*testing.T).TempDir(), NewKey()))
	}})
}

// variant seals a second envelope with the same origin and sequence
// number as sighting(t, k, seq, ...) but other bytes: a heartbeat.
func variant(t testing.TB, k ed25519.PrivateKey, seq uint64) *intel.Envelope {
	return seal(t, k, intel.KindHeartbeat, seq, t0, map[string]string{"variant": fmt.Sprint(seq)})
}

// TestGroupCommitConcurrent has many goroutines store envelopes of many
// origins at once, each (origin, sequence number) offered several times
// with two different contents, one at a time and in PutEnvelopes
// batches. Exactly one offer of each is added, the stored bytes are that
// offer's, every high-water mark is the highest sequence number, and
// everything reads back.
func TestGroupCommitConcurrent(t *testing.T) {
	for _, o := range groupOpeners() {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			const origins, perOrigin, workers = 8, 40, 16
			ind := mustIndicator(t, "203.0.113.50")
			type offer struct {
				env *intel.Envelope
				id  string // origin/seq
			}
			var offers []offer
			for range origins {
				k := newKey(t)
				for seq := uint64(1); seq <= perOrigin; seq++ {
					a := sighting(t, k, seq, ind, t0)
					b := variant(t, k, seq)
					id := fmt.Sprintf("%s/%d", nodeID(k), seq)
					// Each worker offers either content; the sighting is
					// offered by more of them.
					offers = append(offers, offer{a, id}, offer{b, id}, offer{a, id})
				}
			}
			var mu sync.Mutex
			won := make(map[string][][]byte) // id -> bytes of the offers that were added
			record := func(o offer, added bool) {
				if added {
					mu.Lock()
					won[o.id] = append(won[o.id], o.env.Raw)
					mu.Unlock()
				}
			}
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Worker w takes every workers-th offer: the three
					// offers of each envelope go to three workers, which
					// race; odd workers send theirs in batches of 5.
					var mine []offer
					for i := w; i < len(offers); i += workers {
						mine = append(mine, offers[i])
					}
					if w%2 == 0 {
						for _, o := range mine {
							added, err := s.PutEnvelope(o.env, t0)
							if err != nil {
								t.Error(err)
								return
							}
							record(o, added)
						}
						return
					}
					for len(mine) > 0 {
						n := min(5, len(mine))
						envs := make([]*intel.Envelope, n)
						for i := range n {
							envs[i] = mine[i].env
						}
						added, err := s.PutEnvelopes(envs, t0)
						if err != nil {
							t.Error(err)
							return
						}
						for i := range n {
							record(mine[i], added[i])
						}
						mine = mine[n:]
					}
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			hw, err := s.HighWater()
			if err != nil {
				t.Fatal(err)
			}
			stored := 0
			for _, o := range offers {
				raw, err := s.GetEnvelope(o.env.OriginID(), o.env.Seq)
				if err != nil {
					t.Fatal(err)
				}
				w := won[o.id]
				if len(w) != 1 {
					t.Fatalf("%s: %d offers reported added, want 1", o.id, len(w))
				}
				if !bytes.Equal(raw, w[0]) {
					t.Fatalf("%s: stored bytes are not those of the offer reported added", o.id)
				}
				if hw[o.env.OriginID()] < o.env.Seq {
					t.Fatalf("%s: high-water mark %d below a stored envelope", o.id, hw[o.env.OriginID()])
				}
				stored++
			}
			if len(won) != origins*perOrigin || stored != len(offers) {
				t.Fatalf("%d envelopes added, %d offers found stored; want %d and %d", len(won), stored, origins*perOrigin, len(offers))
			}
			for origin, mark := range hw {
				if _, err := s.GetEnvelope(origin, mark); err != nil {
					t.Fatalf("high-water mark %s/%d names no stored envelope: %v", origin, mark, err)
				}
			}
			if n, err := s.CountEnvelopes(); err != nil || n != len(won) {
				t.Fatalf("CountEnvelopes = %d, %v; want %d", n, err, len(won))
			}
			recs, err := s.SightingsFor(ind, t0)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, w := range won {
				if env, err := intel.Open(w[0]); err == nil && env.Kind == intel.KindSighting {
					want++
				}
			}
			if len(recs) != want {
				t.Fatalf("%d sightings indexed, want %d", len(recs), want)
			}
		})
	}
}

// TestPutEnvelopesOneGroup stores one batch with duplicates inside it and
// against the store: the first of each is added, in one commit, and the
// high-water mark is the highest sequence number.
func TestPutEnvelopesOneGroup(t *testing.T) {
	for _, o := range groupOpeners() {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			k := newKey(t)
			ind := mustIndicator(t, "203.0.113.51")
			e1, e1b, e2, e5 := sighting(t, k, 1, ind, t0), variant(t, k, 1), heartbeat(t, k, 2), sighting(t, k, 5, ind, t0)
			put(t, s, e2, t0)
			before := s.CommitStats()
			added, err := s.PutEnvelopes([]*intel.Envelope{e5, e1, e1b, e2, e1}, t0)
			if err != nil {
				t.Fatal(err)
			}
			if want := []bool{true, true, false, false, false}; fmt.Sprint(added) != fmt.Sprint(want) {
				t.Fatalf("added = %v, want %v", added, want)
			}
			if cs := s.CommitStats(); cs.Commits-before.Commits != 1 || cs.Stored-before.Stored != 2 || cs.Groups-before.Groups != 1 {
				t.Fatalf("CommitStats %+v after %+v: want one group, one commit, two envelopes stored", cs, before)
			}
			if raw, err := s.GetEnvelope(nodeID(k), 1); err != nil || !bytes.Equal(raw, e1.Raw) {
				t.Fatalf("envelope 1: %v, or not the first offered", err)
			}
			if hw, err := s.HighWater(); err != nil || hw[nodeID(k)] != 5 {
				t.Fatalf("HighWater = %v, %v; want 5", hw, err)
			}
			if recs, err := s.SightingsFor(ind, t0); err != nil || len(recs) != 2 {
				t.Fatalf("SightingsFor = %d records, %v; want 2", len(recs), err)
			}
			if added, err := s.PutEnvelopes(nil, t0); err != nil || len(added) != 0 {
				t.Fatalf("PutEnvelopes(nil) = %v, %v", added, err)
			}
			if _, err := s.PutEnvelopes([]*intel.Envelope{e1, {}}, t0); err == nil || !strings.Contains(err.Error(), "envelope 2 of 2") {
				t.Fatalf("PutEnvelopes with an empty envelope: %v", err)
			}
		})
	}
}

// TestGroupCommitSplitsTooBig gathers more than one transaction holds,
// by size (large envelopes) and by count (many small ones, so that the
// transaction fills in the middle of an envelope's writes): the group is
// written as several transactions, and every envelope is added once and
// reads back.
func TestGroupCommitSplitsTooBig(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		pad  int
	}{{"size", 100, 16 << 10}, {"count", 4000, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions(t.TempDir())
			opts.MemTableSize = minMemTableSize // about 600 KiB per transaction
			if tc.name == "size" {
				// Envelopes in the value log take a pointer's space in a
				// transaction: only values kept in the tree fill one.
				opts.valueThreshold = oldValueThreshold
			}
			s := openStore(t, opts)
			s.group.maxBytes = 1 << 40 // gather past what a transaction holds
			k := newKey(t)
			pad := strings.Repeat("x", tc.pad)
			var envs []*intel.Envelope
			for i := range tc.n {
				envs = append(envs, seal(t, k, intel.KindHeartbeat, uint64(i+1), t0, map[string]string{"pad": pad}))
			}
			before := s.group.commits.Load()
			added, err := s.PutEnvelopes(envs, t0)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range added {
				if !a {
					t.Fatalf("envelope %d not added", i+1)
				}
			}
			if n := s.group.commits.Load() - before; n < 2 {
				t.Fatalf("%d commits for %d envelopes, want the group split", n, tc.n)
			}
			for _, env := range envs {
				if raw, err := s.GetEnvelope(nodeID(k), env.Seq); err != nil || !bytes.Equal(raw, env.Raw) {
					t.Fatalf("envelope %d: %v", env.Seq, err)
				}
			}
			if hw, _ := s.HighWater(); hw[nodeID(k)] != uint64(tc.n) {
				t.Fatalf("HighWater = %v", hw)
			}
			if n, err := s.CountEnvelopes(); err != nil || n != tc.n {
				t.Fatalf("CountEnvelopes = %d, %v", n, err)
			}
		})
	}
}

// TestGroupCommitEnvelopeTooBig has one envelope in a group that no
// transaction can hold: it alone fails, with ErrTxnTooBig, and the
// envelopes around it are stored.
func TestGroupCommitEnvelopeTooBig(t *testing.T) {
	opts := DefaultOptions(t.TempDir())
	opts.MemTableSize = minMemTableSize
	s := openStore(t, opts)
	k := newKey(t)
	a, b, c := heartbeat(t, k, 1), heartbeat(t, k, 2), heartbeat(t, k, 3)
	group := make([]envelopeWrite, 3)
	for i, env := range []*intel.Envelope{a, b, c} {
		w, err := newEnvelopeWrite(env, t0)
		if err != nil {
			t.Fatal(err)
		}
		group[i] = w
	}
	// More keys than a transaction of this store holds, which no real
	// envelope has.
	for i := range s.db.MaxBatchCount() {
		group[1].sightKeys = append(group[1].sightKeys, []byte(fmt.Sprintf("test/too-big/%d", i)))
	}
	s.group.submit(&putReq{writes: group})
	if !group[0].added || group[0].err != nil || !group[2].added || group[2].err != nil {
		t.Fatalf("neighbours of the oversized envelope: %+v, %+v", group[0].err, group[2].err)
	}
	if group[1].added || !errors.Is(group[1].err, badger.ErrTxnTooBig) {
		t.Fatalf("oversized envelope: added %v, %v; want ErrTxnTooBig", group[1].added, group[1].err)
	}
	for _, env := range []*intel.Envelope{a, c} {
		if _, err := s.GetEnvelope(nodeID(k), env.Seq); err != nil {
			t.Fatalf("envelope %d: %v", env.Seq, err)
		}
	}
	if _, err := s.GetEnvelope(nodeID(k), 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("oversized envelope stored: %v", err)
	}
}

// TestGroupCommitFailure fails one commit: its callers get the cause,
// wrapped with what they stored, the envelopes of earlier commits stay
// stored, and the failed ones can be stored again.
func TestGroupCommitFailure(t *testing.T) {
	for _, o := range groupOpeners() {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			k := newKey(t)
			ind := mustIndicator(t, "203.0.113.52")
			var first, second []*intel.Envelope
			for i := range 10 {
				first = append(first, sighting(t, k, uint64(i+1), ind, t0))
				second = append(second, sighting(t, k, uint64(i+11), ind, t0))
			}
			if _, err := s.PutEnvelopes(first, t0); err != nil {
				t.Fatal(err)
			}
			disk := errors.New("injected I/O error")
			s.group.hook = func(*badger.Txn, int) error { return disk }
			added, err := s.PutEnvelopes(second[:5], t0)
			if !errors.Is(err, disk) || !strings.Contains(err.Error(), fmt.Sprintf("put envelope %s/11", nodeID(k))) {
				t.Fatalf("PutEnvelopes in a failed commit: %v", err)
			}
			for i, a := range added {
				if a {
					t.Fatalf("envelope %d reported added in a failed commit", i+11)
				}
			}
			if added, err := s.PutEnvelope(second[5], t0); added || !errors.Is(err, disk) {
				t.Fatalf("PutEnvelope in a failed commit: %v, %v", added, err)
			}
			s.group.hook = nil
			for _, env := range first {
				if raw, err := s.GetEnvelope(nodeID(k), env.Seq); err != nil || !bytes.Equal(raw, env.Raw) {
					t.Fatalf("envelope %d of an earlier commit: %v", env.Seq, err)
				}
			}
			if hw, _ := s.HighWater(); hw[nodeID(k)] != 10 {
				t.Fatalf("HighWater after a failed commit = %v, want 10", hw)
			}
			if _, err := s.GetEnvelope(nodeID(k), 11); !errors.Is(err, ErrNotFound) {
				t.Fatalf("envelope of a failed commit: %v", err)
			}
			added, err = s.PutEnvelopes(second, t0)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range added {
				if !a {
					t.Fatalf("envelope %d not added after the failure", i+11)
				}
			}
			if recs, err := s.SightingsFor(ind, t0); err != nil || len(recs) != 20 {
				t.Fatalf("%d sightings, %v; want 20", len(recs), err)
			}
		})
	}
}

// TestCloseStopsCommitter closes the store while writers run: every call
// succeeds or fails with ErrClosed, Close returns after the committer
// has stopped, and a later call fails with ErrClosed, naming the
// envelope.
func TestCloseStopsCommitter(t *testing.T) {
	for _, o := range groupOpeners() {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			k := newKey(t)
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 50 {
						_, err := s.PutEnvelope(heartbeat(t, k, uint64(w*50+i+1)), t0)
						if errors.Is(err, ErrClosed) {
							return
						}
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-s.group.done:
			default:
				t.Fatal("Close returned before the committer stopped")
			}
			wg.Wait()
			env := heartbeat(t, k, 1000)
			_, err := s.PutEnvelope(env, t0)
			if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), fmt.Sprintf("%s/1000", nodeID(k))) {
				t.Fatalf("PutEnvelope after Close: %v", err)
			}
			if _, err := s.PutEnvelopes([]*intel.Envelope{env}, t0); !errors.Is(err, ErrClosed) {
				t.Fatalf("PutEnvelopes after Close: %v", err)
			}
		})
	}
}
