package gossip

import (
	"context"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// The Handler always runs with a deadline at most HandlerTimeout away:
// the validator's own when it ends sooner (as GossipSub's does), one of
// HandlerTimeout otherwise.
func TestHandlerDeadline(t *testing.T) {
	const timeout = time.Minute
	h, _ := newTestHost(t)
	sk, raw := newKey(t)
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	var got time.Time
	var had bool
	g, err := New(context.Background(), h, Options{
		Handler: HandlerFunc(func(ctx context.Context, _ *intel.Envelope, _ peer.ID) error {
			got, had = ctx.Deadline()
			return nil
		}),
		HandlerTimeout: timeout,
		Logger:         quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	validate := g.validator(g.sightings)
	soon := time.Now().Add(timeout / 2)
	later := time.Now().Add(10 * timeout)
	for i, tc := range []struct {
		name     string
		deadline time.Time // zero: none
	}{
		{"no deadline", time.Time{}},
		{"a sooner deadline", soon},
		{"a later deadline", later},
	} {
		ctx := context.Background()
		if !tc.deadline.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, tc.deadline)
			defer cancel()
		}
		before := time.Now()
		m := message(id, seal(t, raw, uint64(i+1), before))
		if res := validate(ctx, id, m); res != pubsub.ValidationAccept {
			t.Fatalf("%s: %v, rejections %v", tc.name, res, g.Rejected())
		}
		after := time.Now()
		switch {
		case !had:
			t.Fatalf("%s: the Handler ran without a deadline", tc.name)
		case tc.deadline.Equal(soon) && !got.Equal(soon):
			t.Fatalf("%s: deadline %s, want the validator's %s", tc.name, got, soon)
		case !tc.deadline.Equal(soon) && (got.Before(before.Add(timeout)) || got.After(after.Add(timeout))):
			t.Fatalf("%s: deadline %s, want HandlerTimeout from the call", tc.name, got)
		}
	}
}
