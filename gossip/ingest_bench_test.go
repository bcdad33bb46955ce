package gossip

import (
	"context"
	"crypto/ed25519"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/testenv"
	"github.com/meshward/meshward/store"
)

// BenchmarkIngest measures durable ingest end to end: envelopes sealed
// beforehand by many origins go through the sightings topic's validator
// as GossipSub runs it (one goroutine per message, at most
// ValidatorConcurrency at once): rate limit, open and verify through a
// verify cache, author, roster, freshness, payload, replay check, and a
// Handler that stores each envelope before the validator accepts it.
// store=disk stores on disk with synced writes (the node's store),
// store=disk-aes the same encrypted at rest, and store=none stores
// nothing: the ceiling that verification alone leaves on this machine at
// this moment. Reported as envelopes/s and CPU time per envelope, and on
// disk how many envelopes each commit (one sync) carried.
func BenchmarkIngest(b *testing.B) {
	for _, kind := range []string{"none", "disk", "disk-aes"} {
		b.Run("store="+kind, func(b *testing.B) {
			var put func(*intel.Envelope) error
			if kind != "none" {
				opts := store.DefaultOptions(b.TempDir())
				if kind == "disk-aes" {
					opts.EncryptionKey = store.NewKey()
				}
				st, err := store.Open(opts)
				if err != nil {
					b.Fatal(err)
				}
				defer func() {
					if cs := st.CommitStats(); cs.Commits > 0 {
						b.ReportMetric(float64(cs.Stored)/float64(cs.Commits), "envelopes/fsync")
					}
					if n, err := st.CountEnvelopes(); err != nil || n != b.N {
						b.Errorf("%d envelopes stored, want %d: %v", n, b.N, err)
					}
					if err := st.Close(); err != nil {
						b.Error(err)
					}
				}()
				put = func(env *intel.Envelope) error {
					_, err := st.PutEnvelope(env, time.Now())
					return err
				}
			}
			benchIngest(b, put)
		})
	}
}

func benchIngest(b *testing.B, put func(*intel.Envelope) error) {
	const origins = 256
	h, _ := newTestHost(b)
	type origin struct {
		key ed25519.PrivateKey
		id  peer.ID
	}
	members := rosterSet{}
	orgs := make([]origin, origins)
	for i := range orgs {
		sk, raw := newKey(b)
		id, err := peer.IDFromPrivateKey(sk)
		if err != nil {
			b.Fatal(err)
		}
		orgs[i] = origin{key: raw, id: id}
		members[id.String()] = true
	}
	g, err := New(context.Background(), h, Options{
		Handler: HandlerFunc(func(_ context.Context, env *intel.Envelope, _ peer.ID) error {
			if put == nil {
				return nil
			}
			return put(env)
		}),
		Roster:         members,
		Verify:         intel.NewVerifyCache(intel.DefaultVerifyCacheSize),
		ReplayCapacity: max(b.N, DefaultReplayCapacity),
		Logger:         quietLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	// Sealing is not what is measured.
	now := time.Now()
	msgs := make([]*pubsub.Message, b.N)
	for i := range msgs {
		o := orgs[i%origins]
		msgs[i] = message(o.id, seal(b, o.key, uint64(i/origins+1), now))
		msgs[i].ReceivedFrom = o.id
	}
	validate := g.validator(g.sightings)
	cpu0 := testenv.ProcessCPU(b)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range ValidatorConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(msgs)) {
					return
				}
				m := msgs[i]
				if res := validate(context.Background(), m.ReceivedFrom, m); res != pubsub.ValidationAccept {
					b.Errorf("envelope %d: validator returned %v; rejections %v", i, res, g.Rejected())
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
	// CPU time per envelope does not depend on what else the machine
	// runs: 2 cores give 2e6 divided by it envelopes per second at most.
	b.ReportMetric(float64((testenv.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/envelope")
}

// BenchmarkSyncIngest measures anti-entropy into a durable store: a node
// whose on-disk store (synced writes) is its Log and Handler connects to
// a peer holding b.N envelopes of 64 origins and pulls them over
// loopback, every one verified and stored. Reported as envelopes/s, from
// the connection to the last envelope accepted.
func BenchmarkSyncIngest(b *testing.B) {
	const origins = 64
	server := newMemLog()
	now := time.Now()
	keys := make([]ed25519.PrivateKey, origins)
	for i := range keys {
		_, keys[i] = newKey(b)
	}
	for i := range b.N {
		k := keys[i%origins]
		raw := seal(b, k, uint64(i/origins+1), now.Add(-time.Hour))
		server.put(intel.NodeID(k.Public().(ed25519.PublicKey)), uint64(i/origins+1), raw)
	}
	st, err := store.Open(store.DefaultOptions(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	}()
	opts := Options{SyncMaxSession: 4096, SyncInterval: time.Hour, Verify: intel.NewVerifyCache(intel.DefaultVerifyCacheSize)}
	opts.Log = server
	src := startMeshNode(b, nil, server, opts)
	opts.Log = st
	opts.Handler = HandlerFunc(func(_ context.Context, env *intel.Envelope, _ peer.ID) error {
		_, err := st.PutEnvelope(env, time.Now())
		return err
	})
	dst := startMeshNode(b, nil, nil, opts)
	b.ResetTimer()
	connect(b, dst.h, src.h) // the connection triggers the sessions
	deadline := time.Now().Add(time.Minute)
	for dst.g.SyncAccepted() < uint64(b.N) {
		if time.Now().After(deadline) || len(dst.g.SyncRejected()) > 0 {
			b.Fatalf("accepted %d of %d; rejections %v", dst.g.SyncAccepted(), b.N, dst.g.SyncRejected())
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
}
