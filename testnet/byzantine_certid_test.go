package testnet

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
)

// certIDLines are sshd failure messages of a client at %[1]s (port %[2]d)
// that chose what it sends — a certificate's key ID, a hostbased client's
// names, a GSSAPI principal, a user name — so that the line also names
// 10.0.0.1, an innocent address, where a source may be. ambiguous marks
// the lines whose source cannot be told (two places where sshd may have
// written it, or key information where sshd writes none): the detectors
// must skip them. The others name the client's own address unambiguously.
var certIDLines = []struct {
	format    string
	ambiguous bool
}{
	// A certificate whose key ID ends the line as a source does (the key
	// ID chosen so, or syslog cutting the line right there).
	{"Failed publickey for root from %[1]s port %[2]d ssh2: ED25519-CERT SHA256:Q2VydGlmaWVkS2V5 ID deploy from 10.0.0.1 port 22 ssh2", true},
	// The same before OpenSSH 6.8, which wrote no fingerprint of the
	// certified key.
	{"Failed publickey for invalid user admin from %[1]s port %[2]d ssh2: RSA-CERT ID ops from 10.0.0.1 port 22 ssh2", true},
	// A key ID holding a whole "from <addr> port <n> ssh2: <key>".
	{"Failed publickey for git from %[1]s port %[2]d ssh2: ECDSA-CERT SHA256:Q2VydGlmaWVkS2V5 ID x from 10.0.0.1 port 22 ssh2: ED25519 SHA256:RmFrZUtleQ (serial 7) CA ED25519 SHA256:Q0FLZXk", true},
	// A hostbased client's certificate, a GSSAPI principal.
	{"Failed hostbased for root from %[1]s port %[2]d ssh2: ED25519-CERT SHA256:Q2VydGlmaWVkS2V5 ID client from 10.0.0.1 port 22 ssh2", true},
	{"Failed gssapi-with-mic for root from %[1]s port %[2]d ssh2: evil@EXAMPLE.ORG from 10.0.0.1 port 22 ssh2", true},
	// Password and keyboard-interactive wordings carrying key
	// information, which sshd never writes after them.
	{"Failed password for root from %[1]s port %[2]d ssh2: ED25519-CERT SHA256:Q2VydGlmaWVkS2V5 ID from 10.0.0.1 port 22 ssh2 (serial 7) CA ED25519 SHA256:Q0FLZXk", true},
	{"Failed keyboard-interactive/pam for invalid user test from %[1]s port %[2]d ssh2: ED25519-CERT SHA256:Q2VydGlmaWVkS2V5 ID from 10.0.0.1 port 22 ssh2 (serial 7) CA ED25519 SHA256:Q0FLZXk", true},
	{"Failed keyboard-interactive for root from %[1]s port %[2]d ssh2: RSA-CERT SHA256:Q2VydGlmaWVkS2V5 ID from 10.0.0.1 port 22", true},
	// A key ID with "from 10.0.0.1 port 22" inside, the rest of the
	// certificate after it: the source is the client's.
	{"Failed publickey for root from %[1]s port %[2]d ssh2: ED25519-CERT SHA256:Q2VydGlmaWVkS2V5 ID deploy from 10.0.0.1 port 22 (serial 7) CA ED25519 SHA256:Q0FLZXk", false},
	// A user name with the innocent source inside: sshd's own source
	// ends the line.
	{"Failed password for invalid user x from 10.0.0.1 port 22 ssh2 from %[1]s port %[2]d ssh2", false},
}

// certIDLog returns rounds rounds of certIDLines from client against
// host, one round a second and ending at end, and how many of its lines
// are ambiguous.
func certIDLog(host string, client netip.Addr, rounds int, end time.Time) ([]byte, int) {
	var b bytes.Buffer
	ambiguous := 0
	start := end.Add(-time.Duration(rounds-1) * time.Second)
	for r := range rounds {
		ts := start.Add(time.Duration(r) * time.Second).Format(time.Stamp)
		for j, l := range certIDLines {
			pid, port := 30000+r*len(certIDLines)+j, 50000+r*len(certIDLines)+j
			fmt.Fprintf(&b, "%s %s sshd[%d]: %s\n", ts, host, pid, fmt.Sprintf(l.format, client, port))
			if l.ambiguous {
				ambiguous++
			}
		}
	}
	return b.Bytes(), ambiguous
}

// detectorCounter reads one of the detector engine's counters from the
// node's metrics registry.
func detectorCounter(n *node.Node, name string) (uint64, error) {
	mfs, err := n.Metrics().Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return uint64(mf.GetMetric()[0].GetCounter().GetValue()), nil
		}
	}
	return 0, fmt.Errorf("node %s has no metric %s", n.Site(), name)
}

// TestCertKeyIDInjectionBlocksNoInnocent: an attacker fails sshd logins
// at two sites with certificates (and user names, hostbased names, GSSAPI
// principals) chosen so that each line also names 10.0.0.1 where a source
// may be. Were 10.0.0.1 read as the source, two members would sight it
// and the mesh would block an innocent address everywhere. Alongside, a
// genuine brute force hits the same two sites. Once the genuine
// attacker's block is committed and enforced on every node — the pipeline
// ran — no node holds a sighting, a detection, a local decision, a
// mesh-wide policy or a block of 10.0.0.1, and the two attacked nodes
// counted every ambiguous line as skipped.
func TestCertKeyIDInjectionBlocksNoInnocent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := Start(ctx, Options{Nodes: 3, Dir: t.TempDir(), Logger: testLogger(t), LocalBlock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	innocent := netip.MustParseAddr("10.0.0.1")
	client := netip.MustParseAddr("203.0.113.50") // where the forged lines really come from
	genuine := netip.MustParseAddr("198.51.100.77")
	innocentInd, clientInd, genuineInd := intel.IndicatorFromAddr(innocent), intel.IndicatorFromAddr(client), intel.IndicatorFromAddr(genuine)
	attacked := []int{0, 1}

	// Nothing protects 10.0.0.1: were it read as a source, it would be
	// reported and blocked.
	for i, n := range m.Nodes {
		for _, p := range n.Consensus().Protected() {
			if p.Contains(innocent) {
				t.Fatalf("node %d protects %s (%s): the test would prove nothing", i, innocent, p)
			}
		}
	}

	// Each attacked node's auth.log: forged lines, the genuine brute
	// force, forged lines again. Every round of forged lines crosses the
	// ssh-bruteforce rule's threshold (5 in 60 s) on its own.
	wantLines := make([]uint64, len(m.Nodes))
	wantSkipped := make([]uint64, len(m.Nodes))
	for _, i := range attacked {
		now := time.Now()
		host := m.Nodes[i].Site()
		before, amb1 := certIDLog(host, client, 20, now.Add(-30*time.Second))
		brute := SSHBruteForceLog(host, genuine, 12, now)
		after, amb2 := certIDLog(host, client, 20, now)
		log := slices.Concat(before, brute, after)
		wantLines[i] = uint64(bytes.Count(log, []byte("\n")))
		wantSkipped[i] = uint64(amb1 + amb2)
		if err := m.AppendAuthLog(i, log); err != nil {
			t.Fatal(err)
		}
	}

	// Every line written has been through its node's detectors: the
	// engine's counters are read under the lock it holds while it
	// processes a line, the sightings that line emits included.
	err = Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for i, n := range m.Nodes {
			lines, err := detectorCounter(n, "meshward_detector_lines_total")
			if err != nil {
				return false, err.Error()
			}
			if lines < wantLines[i] {
				return false, fmt.Sprintf("node %d has read %d of %d lines", i, lines, wantLines[i])
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}

	// The control: the genuine attacker's block is committed and enforced
	// on every node.
	err = Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for i, n := range m.Nodes {
			tl, _ := n.Timeline(genuineInd)
			if tl.MeshEnforced().IsZero() || !n.Enforcing(genuineInd) {
				return false, fmt.Sprintf("node %d does not yet enforce a mesh-wide block of %s", i, genuine)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}

	// Every node holds every envelope the attacked nodes published, and
	// its consensus state reflects every command committed so far.
	err = Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for _, a := range attacked {
			origin := m.Nodes[a].ID()
			own, err := m.Nodes[a].Store().HighWater()
			if err != nil {
				return false, err.Error()
			}
			for i, n := range m.Nodes {
				hw, err := n.Store().HighWater()
				if err != nil {
					return false, err.Error()
				}
				if hw[origin] < own[origin] {
					return false, fmt.Sprintf("node %d holds node %d's envelopes up to %d of %d", i, a, hw[origin], own[origin])
				}
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range m.Nodes {
		if err := n.Consensus().WaitConsistent(ctx); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}

	now := time.Now()
	blockID := intel.PolicyID(intel.ActionBlock, innocentInd)
	for i, n := range m.Nodes {
		recs, err := n.Store().Sightings(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if ind := r.Sighting.Indicator; ind != genuineInd && ind != clientInd {
				t.Errorf("node %d holds a sighting of %s by %s (%s)", i, ind.Value, r.Origin, r.Sighting.Detector)
			}
		}
		if recs, err := n.Store().SightingsFor(innocentInd, time.Time{}); err != nil || len(recs) != 0 {
			t.Errorf("node %d holds %d sightings of %s (err %v)", i, len(recs), innocent, err)
		}
		if tl, ok := n.Timeline(innocentInd); ok {
			t.Errorf("node %d has a timeline for %s: %+v", i, innocent, tl)
		}
		decs, err := n.Store().Decisions(now)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range decs {
			if p.Indicator == innocentInd {
				t.Errorf("node %d holds local decision %+v", i, p)
			}
		}
		if p, ok := n.Consensus().Policy(blockID, now); ok {
			t.Errorf("node %d's FSM holds %+v", i, p)
		}
		for _, p := range n.Consensus().Policies(now) {
			if p.Indicator == innocentInd {
				t.Errorf("node %d's FSM holds mesh-wide policy %+v", i, p)
			}
		}
		if n.Enforcing(innocentInd) {
			t.Errorf("node %d blocks %s", i, innocent)
		}
		if s := n.Stats(); s.Suppressed != 0 {
			t.Errorf("node %d suppressed %d detections of protected addresses", i, s.Suppressed)
		}

		skipped, err := detectorCounter(n, "meshward_detector_lines_skipped_total")
		if err != nil {
			t.Fatal(err)
		}
		if skipped != wantSkipped[i] {
			t.Errorf("node %d skipped %d lines, want the %d ambiguous ones", i, skipped, wantSkipped[i])
		}
		if !slices.Contains(attacked, i) {
			continue
		}
		// The attacked nodes detected both attackers for what they did,
		// and blocked the genuine one locally at once.
		for _, ind := range []intel.Indicator{genuineInd, clientInd} {
			if tl, _ := n.Timeline(ind); tl.Detected.IsZero() {
				t.Errorf("attacked node %d never detected %s", i, ind.Value)
			}
		}
		if !slices.ContainsFunc(decs, func(p intel.Policy) bool { return p.Indicator == genuineInd }) {
			t.Errorf("attacked node %d holds no local decision for %s", i, genuine)
		}
	}
}
