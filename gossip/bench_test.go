package gossip

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/meshward/meshward/intel"
)

// BenchmarkValidate measures the whole validator, Handler excluded (it
// returns at once): open and verify, author, roster, freshness, sighting
// decode and the replay check. Reported as envelopes/s.
func BenchmarkValidate(b *testing.B) {
	for _, par := range []bool{false, true} {
		name := "serial"
		if par {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) { benchValidate(b, par) })
	}
}

func benchValidate(b *testing.B, parallel bool) {
	h, key := newTestHost(b)
	const pool = 1 << 14
	g, err := New(context.Background(), h, Options{
		Handler:        HandlerFunc(func(context.Context, *intel.Envelope, peer.ID) error { return nil }),
		Roster:         rosterSet{h.ID().String(): true},
		ReplayCapacity: 4 * pool,
		// One peer delivers everything: the rate limit is not measured.
		RateLimit: rate.Inf,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	validate := g.validator(g.sightings)
	msgs := make([]*pubsub.Message, pool)
	now := time.Now()
	for i := range msgs {
		msgs[i] = message(h.ID(), seal(b, key, uint64(i+1), now))
	}
	// Serially, each round of the pool gets a fresh replay cache so that every
	// envelope is new; swapping it is not timed.
	// In parallel, repeats are Ignored as replays after the full signature
	// check, which is the cost being measured.
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		var next atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := next.Add(1)
				if validate(context.Background(), "n", msgs[i%pool]) == pubsub.ValidationReject {
					b.Error("rejected")
					return
				}
			}
		})
	} else {
		for i := 0; i < b.N; i++ {
			if i%pool == 0 && i > 0 {
				b.StopTimer()
				g.replay = newReplayCache(4 * pool)
				b.StartTimer()
			}
			if validate(context.Background(), "n", msgs[i%pool]) != pubsub.ValidationAccept {
				b.Fatal("not accepted")
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
}
