package node

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// testClock is a node clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// policyEvents counts the policy events in a JSON-lines event file, by
// kind and policy ID.
func policyEvents(t *testing.T, path string) map[string]int {
	t.Helper()
	out := map[string]int{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Kind     string `json:"kind"`
			PolicyID string `json:"policy_id"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.PolicyID != "" {
			out[e.Kind+" "+e.PolicyID]++
		}
	}
	return out
}

// The node reports each mesh-wide policy committed once, and expired once:
// when it is revoked (a change in the feed) and when its time passes by
// the node's clock (no change in the feed for it: the watch reads the
// expiries passed from the consensus state, which still holds it).
func TestPolicyEventsFollowTheChangeFeed(t *testing.T) {
	events := filepath.Join(t.TempDir(), "events.jsonl")
	clk := &testClock{t: time.Now()}
	n := startSingleWith(t, Options{Clock: clk.Now}, func(cfg *Config) {
		cfg.Events.JSONLines = events
		cfg.LocalBlock.Enabled = false
	})
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	ctx := t.Context()
	block := func(addr string, ttl time.Duration) intel.Policy {
		t.Helper()
		ind := intel.IndicatorFromAddr(netip.MustParseAddr(addr))
		cmd := intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: int64(ttl / time.Second), Reason: "watch test"}
		if err := n.Consensus().ProposeOperator(ctx, signOperator(t, n, cmd)); err != nil {
			t.Fatal(err)
		}
		return intel.Policy{ID: intel.PolicyID(intel.ActionBlock, ind)}
	}
	wait := func(what string, want map[string]int) {
		t.Helper()
		var got map[string]int
		waitFor(t, what, func() bool {
			got = policyEvents(t, events)
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
			return true
		})
	}
	a := block("203.0.113.1", time.Hour)
	b := block("203.0.113.2", time.Hour)
	wait("both committed", map[string]int{"policy_committed " + a.ID: 1, "policy_committed " + b.ID: 1})

	revoke := intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: b.ID}
	if err := n.Consensus().ProposeOperator(ctx, signOperator(t, n, revoke)); err != nil {
		t.Fatal(err)
	}
	wait("the revoked one expired", map[string]int{"policy_expired " + b.ID: 1})

	// Two hours on by the node's clock, a new commit wakes the watch: the
	// first block has expired for it, though the consensus still holds it.
	clk.Advance(2 * time.Hour)
	c := block("203.0.113.3", 24*time.Hour)
	wait("the old one expired and the new one committed", map[string]int{
		"policy_expired " + a.ID: 1, "policy_committed " + c.ID: 1,
	})
	// A policy extended is not committed again; the next commit shows
	// that the watch has taken the extension in.
	block("203.0.113.3", 48*time.Hour)
	d := block("203.0.113.4", 24*time.Hour)
	wait("the last one committed", map[string]int{"policy_committed " + d.ID: 1})
	// A day on, the last one has expired and the extended one has not:
	// its first expiry has passed, and the consensus state holds it at
	// its new one.
	clk.Advance(25 * time.Hour)
	e := block("203.0.113.5", 72*time.Hour)
	wait("the day-long one expired", map[string]int{"policy_expired " + d.ID: 1, "policy_committed " + e.ID: 1})
	got := policyEvents(t, events)
	for k, v := range map[string]int{
		"policy_committed " + a.ID: 1, "policy_committed " + b.ID: 1, "policy_committed " + c.ID: 1,
		"policy_expired " + a.ID: 1, "policy_expired " + b.ID: 1, "policy_expired " + c.ID: 0,
	} {
		if got[k] != v {
			t.Errorf("%s: %d events, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// When the change feed cannot continue, the watch reads the active
// policies whole: it takes in those it did not know, reports committed
// none it knew, and reports expired, by ID, every one it knew that is
// no longer held.
func TestPolicyWatchResync(t *testing.T) {
	events := filepath.Join(t.TempDir(), "events.jsonl")
	n := startSingleWith(t, Options{}, func(cfg *Config) {
		cfg.Events.JSONLines = events
		cfg.LocalBlock.Enabled = false
	})
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	var ids []string
	for _, addr := range []string{"203.0.113.7", "203.0.113.8"} {
		ind := intel.IndicatorFromAddr(netip.MustParseAddr(addr))
		cmd := intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: 3600, Reason: "resync test"}
		if err := n.Consensus().ProposeOperator(t.Context(), signOperator(t, n, cmd)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, intel.PolicyID(intel.ActionBlock, ind))
	}
	// A watch of its own (the node's runs beside it) that knew a policy
	// since gone and one of the two held.
	const goneID = "00000000000000a7"
	w := policyWatch{active: newIDSet(), started: true}
	for _, id := range []string{goneID, ids[0]} {
		k, ok := keyOf(id)
		if !ok {
			t.Fatalf("ID %s", id)
		}
		w.active.Add(k)
	}
	n.resyncWatch(&w, time.Now())
	if w.active.Len() != 2 {
		t.Fatalf("after the resync the watch holds %d policies, want the 2 held", w.active.Len())
	}
	for _, id := range ids {
		if k, _ := keyOf(id); !w.active.Has(k) {
			t.Fatalf("policy %s held but not watched", id)
		}
	}
	if k, _ := keyOf(goneID); w.active.Has(k) {
		t.Fatal("the policy gone is still watched")
	}
	waitFor(t, "the gone policy's expiry to be reported", func() bool {
		return policyEvents(t, events)["policy_expired "+goneID] == 1
	})
	// The node's own watch reports each held one committed once; the
	// resync reports the one it did not know again, and not the other.
	waitFor(t, "one committed event for the known policy, two for the other", func() bool {
		got := policyEvents(t, events)
		return got["policy_committed "+ids[0]] == 1 && got["policy_committed "+ids[1]] == 2
	})
}
