package gossip

import (
	"context"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// Ingest as a node runs it, many envelopes validated at once into an
// on-disk store with synced writes that commits them in groups: every
// envelope the validator accepts is in the store when the validator
// returns, and still there after the store is closed and opened again.
func TestIngestAcceptsOnlyStored(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(store.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := newTestHost(t)
	const origins, each = 8, 40
	members := rosterSet{}
	type origin struct {
		id  peer.ID
		raw []byte
	}
	var msgs []origin
	now := time.Now()
	for range origins {
		sk, key := newKey(t)
		id, err := peer.IDFromPrivateKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		members[id.String()] = true
		for seq := uint64(1); seq <= each; seq++ {
			msgs = append(msgs, origin{id: id, raw: seal(t, key, seq, now)})
		}
	}
	g, err := New(context.Background(), h, Options{
		Handler: HandlerFunc(func(_ context.Context, env *intel.Envelope, _ peer.ID) error {
			_, err := st.PutEnvelope(env, time.Now())
			return err
		}),
		Roster: members,
		Verify: intel.NewVerifyCache(intel.DefaultVerifyCacheSize),
		Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	validate := g.validator(g.sightings)
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := validate(context.Background(), m.id, message(m.id, m.raw)); res != pubsub.ValidationAccept {
				t.Errorf("validator: %v; rejections %v", res, g.Rejected())
				return
			}
			env, err := intel.Open(m.raw)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := st.GetEnvelope(m.id.String(), env.Seq); err != nil {
				t.Errorf("accepted %s/%d is not stored: %v", m.id, env.Seq, err)
			}
		}()
	}
	wg.Wait()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		return
	}
	st, err = store.Open(store.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.CountEnvelopes(); err != nil || n != len(msgs) {
		t.Fatalf("%d envelopes stored after reopening, %v; want %d", n, err, len(msgs))
	}
}
