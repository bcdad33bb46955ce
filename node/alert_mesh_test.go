package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/alert"
	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/responders/webhook"
	"github.com/meshward/meshward/testnet"
)

// A member cut off from a real three-node mesh is alerted down once by
// the node watching it, through its webhook, and resolved when it is
// heard again after the partition heals; cut off again, it fires anew,
// and its removal from the roster resolves it. A Raft standby cut off
// alerts leaderless once and resolves when healed.
func TestNodeDownAlertFiresOnceAndResolves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node mesh")
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	var mu sync.Mutex
	var got []siem.Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), body, r.Header.Get(webhook.HeaderSignature), time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var e siem.Event
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if e.Kind == siem.KindAlert {
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
		}
	}))
	defer srv.Close()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := testnet.Start(ctx, testnet.Options{Nodes: 3, Configure: func(i int, c *node.Config) {
		c.Gossip.HeartbeatInterval = 100 * time.Millisecond
		if i > 1 {
			return
		}
		c.Events.Webhook.URL = srv.URL
		c.Events.Webhook.SecretFile = secretFile
		c.Events.Webhook.MinBackoff = 10 * time.Millisecond
		c.Events.Webhook.MaxBackoff = 100 * time.Millisecond
		c.Alerts.EvalInterval = 100 * time.Millisecond
		c.Alerts.NodeDownAfter = 3 * time.Second
		c.Alerts.LeaderlessAfter = time.Second
		// Node 0 watches its members; node 1 (a Raft server: voter or
		// standby) its leader.
		if i == 0 {
			c.Alerts.Rules = []alert.Rule{{Name: "member-down", On: alert.KindNodeDown}}
		} else {
			c.Alerts.Rules = []alert.Rule{{Name: "leaderless", On: alert.KindLeaderless}}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cut := m.Nodes[2].ID()
	// The alerts of a group, in order received.
	alertsOf := func(group string) []siem.Event {
		mu.Lock()
		defer mu.Unlock()
		var out []siem.Event
		for _, e := range got {
			if e.Alert.Group == group {
				out = append(out, e)
			}
		}
		return out
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		if err := testnet.Poll(ctx, 20*time.Millisecond, func() (bool, string) { return cond(), what }); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	poll("node 0 to hear node 2", func() bool {
		for _, hb := range m.Nodes[0].Gossip().Heartbeats() {
			if hb.Node == cut {
				return true
			}
		}
		return false
	})
	if err := m.Partition([]int{0, 1}, []int{2}); err != nil {
		t.Fatal(err)
	}
	group := "key=" + cut
	states := func() []siem.Event { return alertsOf(group) }
	poll("the member-down alert", func() bool { return len(states()) >= 1 })
	// Evaluated again and again while node 2 stays silent: any repeat
	// would come before the resolution.
	poll("node 2 silent for twice node_down_after", func() bool {
		for _, hb := range m.Nodes[0].Gossip().Heartbeats() {
			if hb.Node == cut {
				return time.Since(hb.Received) > 6*time.Second
			}
		}
		return false
	})
	m.Heal()
	poll("the member-down resolution", func() bool {
		s := states()
		return len(s) >= 2
	})
	s := states()
	if len(s) != 2 {
		t.Fatalf("%d alerts of %s, want firing then resolved", len(s), group)
	}
	if s[0].Alert.State != alert.StateFiring || s[1].Alert.State != alert.StateResolved || s[0].Alert.Rule != "member-down" ||
		s[0].Alert.ID != s[1].Alert.ID || s[0].Node != m.Nodes[0].ID() || s[0].Severity != "high" {
		t.Fatalf("alerts of %s: %+v then %+v", group, s[0].Alert, s[1].Alert)
	}

	// Node 1 cut off from both others knows no leader, and says so once;
	// healed, it learns the leader again.
	if k := m.Nodes[1].Consensus().Kind(); k == consensus.KindEdge {
		t.Fatalf("node 1 is an edge: no leader of its own to watch")
	}
	if err := m.Partition([]int{0, 2}); err != nil {
		t.Fatal(err)
	}
	poll("the leaderless alert", func() bool { return len(alertsOf("key=raft")) >= 1 })
	m.Heal()
	poll("the leaderless resolution", func() bool { return len(alertsOf("key=raft")) >= 2 })
	if l := alertsOf("key=raft"); len(l) != 2 || l[0].Alert.State != alert.StateFiring || l[1].Alert.State != alert.StateResolved ||
		l[0].Alert.Rule != "leaderless" || l[0].Node != m.Nodes[1].ID() {
		t.Fatalf("leaderless alerts: %+v", l)
	}

	// Node 2 cut off again fires anew (the same alert ID); the operator
	// removing it from the roster resolves it.
	if err := m.Partition([]int{0, 1}, []int{2}); err != nil {
		t.Fatal(err)
	}
	poll("the second member-down alert", func() bool { return len(states()) >= 3 })
	if err := m.Operator().Submit(ctx, 0, intel.OperatorCommand{Op: intel.OpRemoveMember, Member: cut}); err != nil {
		t.Fatal(err)
	}
	poll("the resolution by removal", func() bool { return len(states()) >= 4 })
	if s := states(); len(s) != 4 || s[2].Alert.State != alert.StateFiring || s[3].Alert.State != alert.StateResolved ||
		s[2].Alert.ID != s[0].Alert.ID || m.Nodes[0].Consensus().IsMember(cut) {
		t.Fatalf("alerts of %s after the removal: %d, %+v", group, len(s), s[len(s)-1].Alert)
	}
}
