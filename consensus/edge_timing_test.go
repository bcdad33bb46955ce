package consensus

import (
	"context"
	"testing"
	"time"
)

// TestEdgeRetryDelay: an edge's retries after failed syncs start from
// twice its sync interval, never from more than twice the default one
// (an idle testnet edge ticking every second still retries at 400 ms),
// and double up to 5 s.
func TestEdgeRetryDelay(t *testing.T) {
	for _, c := range []struct {
		sync     time.Duration
		failures int
		want     time.Duration
	}{
		{DefaultEdgeSyncInterval, 1, 400 * time.Millisecond},
		{DefaultEdgeSyncInterval, 3, 1600 * time.Millisecond},
		{DefaultEdgeSyncInterval, 5, 5 * time.Second},
		{DefaultEdgeSyncInterval, 100, 5 * time.Second},
		{20 * time.Millisecond, 1, 40 * time.Millisecond},
		{time.Second, 1, 400 * time.Millisecond},
		{time.Second, 2, 800 * time.Millisecond},
		{time.Minute, 100, 5 * time.Second},
	} {
		if got := edgeRetryDelay(c.sync, c.failures); got != c.want {
			t.Errorf("sync every %s, %d failures: retry after %s, want %s", c.sync, c.failures, got, c.want)
		}
	}
}

// TestJoiningEdgePollsUntilAdmitted: an edge off the certified topic,
// whose periodic poll is an hour away, still finds itself on its roster
// after it joins: until it does, it polls at every tick.
func TestJoiningEdgePollsUntilAdmitted(t *testing.T) {
	log := testLogger(t)
	cfg := func(c *Config) {
		c.MaxVoters, c.Standbys = 3, 1
		c.EdgeSyncInterval = 20 * time.Millisecond
		c.EdgePollInterval = time.Hour
	}
	servers := formCluster(t, 4, func(founder bool, secret string) *testNode {
		n := newTestNodeWith(t, log, founder, secret, cfg)
		edgeTopic(t, n, true)
		return n
	})
	edge := newTestNodeWith(t, log, false, servers[0].joinSecret(t, 1), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := edge.c.Join(ctx, servers[1].info()); err != nil {
		t.Fatalf("join: %v", err)
	}
	waitFor(t, 10*time.Second, "the edge on its own roster", func() bool { return edge.c.IsMember(edge.id()) })
	if !edge.c.IsEdge() {
		t.Fatalf("the joiner is a %s, want an edge", edge.c.Kind())
	}
}
