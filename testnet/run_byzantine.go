package testnet

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/gossip"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/query"
)

// strangerProtocols are the protocols a stranger step may try.
var strangerProtocols = map[string]protocol.ID{
	"raft":     consensus.RaftProtocol,
	"raft-rpc": consensus.RPCProtocol,
	"sync":     gossip.SyncProtocol,
	"query":    query.Protocol,
}

// rogue has a member misbehave with its own key, which is valid: the
// mesh must contain what one member can do.
func (r *runner) rogue(ctx context.Context, s *RogueStep) (string, error) {
	nodes, err := r.nodes(ctx, s.Node)
	if err != nil {
		return "", err
	}
	if len(nodes) != 1 || !r.m.Running(nodes[0]) {
		return "", fmt.Errorf("rogue.node: selects %v; one running node is needed", nodes)
	}
	i := nodes[0]
	n := r.m.Nodes[i]
	_, key, err := gossip.LoadOrCreateIdentity(r.m.cfgs[i].DataDir)
	if err != nil {
		return "", fmt.Errorf("rogue key: %w", err)
	}
	seal := func(ind intel.Indicator, count int) ([]byte, uint64, error) {
		seq, err := n.Store().NextSeq()
		if err != nil {
			return nil, 0, err
		}
		now := time.Now().UTC()
		sg := intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Technique: "T1110", Confidence: 90, Count: count,
			FirstSeen: now.Add(-time.Minute), LastSeen: now, Site: n.Site()}
		raw, err := intel.SealJSON(key, intel.KindSighting, seq, now, sg)
		return raw, seq, err
	}
	if s.Flood > 0 {
		sent := 0
		for k := range s.Flood {
			addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + k%254)})
			raw, _, err := seal(intel.IndicatorFromAddr(addr), 1)
			if err != nil {
				return "", err
			}
			if err := n.Gossip().Publish(ctx, raw); err == nil {
				sent++
			}
		}
		return fmt.Sprintf("node %d flooded %d sightings (%d published)", i, s.Flood, sent), nil
	}
	// Forge: sightings of an address it never saw, then an automatic
	// block proposed on them, its own sightings passed off as another
	// member's too.
	ind := intel.IndicatorFromAddr(s.Forge.Addr)
	count := cmpOr(s.Count, 3)
	var proofs [][]byte
	var evidence []intel.Evidence
	for range count {
		raw, seq, err := seal(ind, 50)
		if err != nil {
			return "", err
		}
		if err := n.Gossip().Publish(ctx, raw); err != nil {
			return "", fmt.Errorf("publish the forged sighting: %w", err)
		}
		proofs = append(proofs, raw)
		evidence = append(evidence, intel.Evidence{Origin: n.ID(), Seq: seq, Detector: "ssh-bruteforce", Seen: time.Now().UTC()})
	}
	other := r.m.Nodes[(i+1)%r.size]
	evidence = append(evidence, intel.Evidence{Origin: other.ID(), Seq: evidence[0].Seq, Detector: "ssh-bruteforce", Seen: time.Now().UTC()})
	proofs = append(proofs, proofs[0])
	now := time.Now().UTC()
	p := intel.NewPolicy(intel.ActionBlock, ind, "corroborated by 2 nodes (ssh-bruteforce)", n.ID(), now, time.Hour)
	p.Evidence = evidence
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	perr := n.Consensus().Propose(pctx, consensus.Command{Type: consensus.CmdPutPolicy, At: now, Policy: &p, Proofs: proofs})
	if perr == nil {
		return "", fmt.Errorf("the mesh committed node %d's block of %s on forged evidence", i, ind.Value)
	}
	r.rogueN++
	return fmt.Sprintf("node %d signed %d sightings of %s and proposed a block on them: refused (%s)", i, count, ind.Value, consensus.RefusalReason(perr)), nil
}

// stranger has a libp2p host that is not a member connect to a node and
// open each protocol, sending a few bytes; the node must refuse them.
func (r *runner) stranger(ctx context.Context, s *StrangerStep) (string, error) {
	nodes, err := r.nodes(ctx, s.Node)
	if err != nil {
		return "", err
	}
	if len(nodes) != 1 || !r.m.Running(nodes[0]) {
		return "", fmt.Errorf("stranger.node: selects %v; one running node is needed", nodes)
	}
	target := r.m.Nodes[nodes[0]]
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return "", err
	}
	h, err := gossip.NewHost(gossip.HostConfig{Key: key, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		return "", fmt.Errorf("stranger host: %w", err)
	}
	defer h.Close()
	ma, err := multiaddr.NewMultiaddr(target.Addrs()[0])
	if err != nil {
		return "", err
	}
	ai, err := peer.AddrInfoFromP2pAddr(ma)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := h.Connect(cctx, *ai); err != nil {
		return fmt.Sprintf("node %d refused the stranger's connection: %v", nodes[0], err), nil
	}
	refused := 0
	for _, name := range s.Protocols {
		st, err := h.NewStream(cctx, ai.ID, strangerProtocols[name])
		if err != nil {
			refused++
			continue
		}
		_ = st.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = st.Write([]byte("\x00\x00\x00\x10meshward-stranger"))
		_ = st.CloseWrite()
		if _, err := io.Copy(io.Discard, io.LimitReader(st, 1<<16)); err != nil && !errors.Is(err, io.EOF) {
			refused++
		}
		_ = st.Close()
	}
	return fmt.Sprintf("stranger %s opened %d protocols on node %d", h.ID().ShortString(), len(s.Protocols), nodes[0]), nil
}
