//go:build linux

package testnet

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Namespace mode (`meshward testnet run --netns`) runs every node as a
// real `meshward agent` process in its own network namespace (Linux, as
// root): netns_lab.go makes the namespaces, the hub's bridge and the
// links; netns_mesh.go starts and stops the agents; netns_run.go drives
// a scenario's timeline on them.

// NetnsRunOptions adjust a scenario run in namespace mode.
type NetnsRunOptions struct {
	RunOptions
	// Binary is the meshward binary the nodes run (default: this
	// process's executable).
	Binary string
	// LinkMode is how topology.links are set (LinkNetem, LinkQueue; ""
	// chooses: netem where the kernel has it).
	LinkMode string
	// Started, if set, is called with the mesh once it formed (the
	// tests read its lab and processes).
	Started func(*NetnsMesh)
}

// Errors of namespace mode; each says what is missing.
var (
	// ErrNetnsNotRoot: namespace mode needs root (CAP_NET_ADMIN and
	// CAP_SYS_ADMIN to create namespaces).
	ErrNetnsNotRoot = errors.New("namespace mode needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	// ErrNetnsNoCommand: a command the lab runs is not installed.
	ErrNetnsNoCommand = errors.New("namespace mode needs a command that is not installed")
	// ErrNetnsUnsupported: the kernel refused to make a namespace, a
	// bridge or a veth pair.
	ErrNetnsUnsupported = errors.New("this kernel or container cannot create network namespaces, bridges or veth pairs")
	// ErrNetnsNoNetem: the netem link mode was asked for and the kernel
	// has no netem qdisc (CONFIG_NET_SCH_NETEM).
	ErrNetnsNoNetem = errors.New("the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM)")
	// ErrNetnsNoLinks: topology.links could be set neither by netem nor
	// by the lab's NFQUEUE delay (CONFIG_NETFILTER_NETLINK_QUEUE and
	// the xt NFQUEUE target through nft_compat).
	ErrNetnsNoLinks = errors.New("topology.links need netem or NFQUEUE (nfnetlink_queue and the xt NFQUEUE target), and this kernel has neither")
)

// ErrNetnsStep refuses what namespace mode cannot do: skew (an agent
// reads the host's clock), rogue and stranger (they need a member's key
// or a libp2p host inside the test process), and resource profiles.
var ErrNetnsStep = errors.New("not supported in namespace mode")

// NetnsSupports checks, before anything starts, that every step of s can
// run in namespace mode (profile: the --profile override).
func NetnsSupports(s *Scenario, profile string) error {
	if p := firstNonEmpty(profile, s.Topology.Profile); p != "" && p != ProfileDefault {
		return fmt.Errorf("profile %q: %w (every agent runs its default configuration)", p, ErrNetnsStep)
	}
	for i, st := range s.Timeline {
		why := ""
		switch {
		case st.Skew != nil:
			why = "skew (an agent process reads the host's real-time clock; a time namespace cannot move it)"
		case st.Rogue != nil:
			why = "rogue (it signs with a member's key inside the testnet process)"
		case st.Stranger != nil:
			why = "stranger (a libp2p host of the testnet process)"
		}
		if why != "" {
			return fmt.Errorf("timeline[%d] (line %d): %s: %w", i, s.stepLine(i), why, ErrNetnsStep)
		}
	}
	return nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// BruteForceScenario is `meshward testnet`'s default run as a scenario:
// an SSH brute force from attacker written into the auth logs of the
// first attacked nodes, then the block committed and enforced on every
// node within timeout (the whole run's bound too).
func BruteForceScenario(nodes, attacked, minNodes int, attacker netip.Addr, localBlock bool, timeout time.Duration) (*Scenario, error) {
	if attacked < 1 || attacked > nodes {
		return nil, fmt.Errorf("--attacked %d: from 1 to the %d nodes", attacked, nodes)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("--timeout %s: must be positive", timeout)
	}
	var at []string
	for i := range attacked {
		at = append(at, strconv.Itoa(i))
	}
	y := fmt.Sprintf(`name: brute-force
topology: {nodes: %d, min_nodes: %d, local_block: %t}
timeout: %s
timeline:
  - name: brute force
    attack: {kind: brute_force, from: %s, nodes: [%s]}
  - name: blocked everywhere
    expect:
      committed: %s
      enforced: {indicator: %s, on: all}
      within: %s
`, nodes, minNodes, localBlock, timeout, attacker, strings.Join(at, ", "), attacker, attacker, timeout)
	return ParseScenario("meshward testnet --netns", []byte(y))
}
