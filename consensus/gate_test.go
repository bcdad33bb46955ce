package consensus

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// gateView is a node's raft configuration as its gate last read it, and
// as raft has it now, each as sorted "id/suffrage" strings.
func gateView(n *testNode) (gate, now []string) {
	show := func(conf raft.Configuration) []string {
		var out []string
		for _, s := range conf.Servers {
			out = append(out, fmt.Sprintf("%s/%s", shortID(string(s.ID)), s.Suffrage))
		}
		slices.Sort(out)
		return out
	}
	if conf, ok := n.c.gate.configuration(); ok {
		gate = show(conf)
	}
	if f := n.c.raft.GetConfiguration(); f.Error() == nil {
		now = show(f.Configuration())
	}
	return gate, now
}

// TestGateFollowsConfigurationChanges: with the gate's periodic read an
// hour apart, every node's gate still follows each change of raft's
// configuration (joins, a promotion to voter, a departure): the log
// cache asks for a read when a configuration entry is stored or a range
// deleted. The followers of that read follow too: a standby's certificate
// publisher sees it is no voter, the departed node is refused.
func TestGateFollowsConfigurationChanges(t *testing.T) {
	nodes := newClusterWith(t, 4, func(c *Config) {
		fastTiming(c)
		c.GateRefreshInterval = time.Hour
	})
	defer func() {
		for _, n := range nodes {
			n.stop(t)
		}
	}()
	agree := func(what string, servers int) {
		t.Helper()
		waitFor(t, 20*time.Second, what, func() bool {
			for _, n := range nodes {
				gate, now := gateView(n)
				if len(now) != servers || !slices.Equal(gate, now) {
					return false
				}
			}
			return true
		})
	}
	agree("every gate to read the configuration the joins made", 4)
	for i, n := range nodes {
		gate, _ := gateView(n)
		if len(gate) != 4 {
			t.Fatalf("node %d's gate holds %v, want the 4 servers", i, gate)
		}
		conf, _ := n.c.gate.configuration()
		voter := false
		for _, s := range conf.Servers {
			if string(s.ID) == n.id() {
				voter = s.Suffrage == raft.Voter
			}
		}
		if n.c.isVoter() != voter {
			t.Errorf("node %d: isVoter %v, the configuration says %v", i, n.c.isVoter(), voter)
		}
		if !n.c.knownServer(n.id()) {
			t.Errorf("node %d does not know itself a server", i)
		}
	}

	// A non-leader leaves: every remaining gate drops it, and refuses
	// its raft streams from then on.
	var leaving *testNode
	var rest []*testNode
	for _, n := range nodes {
		if leaving == nil && !n.c.IsLeader() {
			leaving = n
			continue
		}
		rest = append(rest, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := leaving.c.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	nodes = rest
	defer leaving.stop(t)
	agree("every gate to read the configuration without the departed node", 3)
	for i, n := range nodes {
		if n.c.gate.inConfiguration(leaving.h.ID()) {
			t.Errorf("node %d's gate still admits the departed node", i)
		}
		if r := n.c.gate.admit(leaving.h.ID()); r != RefusedNotInConfiguration {
			t.Errorf("node %d: the departed node's stream: %q, want %q", i, r, RefusedNotInConfiguration)
		}
	}
}
