package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// The node is what the admin API serves.
var _ admin.Node = (*Node)(nil)

// Status implements admin.Node.
func (n *Node) Status(context.Context) (admin.Status, error) {
	now := time.Now()
	st := n.Stats()
	cs := n.cons.Stats()
	num := func(k string) uint64 { v, _ := strconv.ParseUint(cs[k], 10, 64); return v }
	var voters []string
	roster := n.cons.Roster()
	for _, m := range roster {
		if m.Voter {
			voters = append(voters, m.ID)
		}
	}
	sort.Strings(voters)
	var protected []string
	for _, p := range n.Protected() {
		protected = append(protected, p.String())
	}
	s := admin.Status{
		Node: admin.NodeStatus{
			ID: n.id, Site: n.cfg.Site, Version: n.version, Addrs: n.Addrs(), StartedAt: n.started,
			Counters: map[string]uint64{
				"detections": st.Detections, "detections_suppressed": st.Suppressed, "sightings_stored": st.SightingsStored,
				"evaluations": st.Evaluations, "evaluations_dropped": st.EvaluationsDrop,
				"proposals": st.Proposals, "proposals_refused": st.ProposalsRefused,
				"proposal_errors": st.ProposalErrors, "local_decisions": st.LocalDecisions,
				"indicator_reports": st.IndicatorReports,
			},
		},
		Mesh: admin.MeshStatus{
			Leader: n.cons.Leader(), IsLeader: n.cons.IsLeader(), RaftState: cs["state"],
			Term: num("term"), CommitIndex: num("commit_index"), AppliedIndex: num("applied_index"),
			Voters: voters, Members: len(roster), Peers: len(n.host.Network().Peers()),
			Policies: len(n.cons.Policies(now)), Protected: protected,
		},
		Health: admin.Health{OK: true},
	}
	if s.Mesh.Leader == "" {
		s.Health.Problems = append(s.Health.Problems, "no leader known: mesh-wide changes cannot commit")
	}
	if !n.cons.IsMember(n.id) {
		s.Health.Problems = append(s.Health.Problems, "this node is not on the roster yet: its sightings are not heard")
	}
	if s.Mesh.Peers == 0 && len(roster) > 1 {
		s.Health.Problems = append(s.Health.Problems, "no connected peers")
	}
	s.Health.OK = len(s.Health.Problems) == 0
	return s, nil
}

// Members implements admin.Node.
func (n *Node) Members(context.Context) ([]admin.Member, error) {
	leader := n.cons.Leader()
	var out []admin.Member
	for _, m := range n.cons.Roster() {
		am := admin.Member{ID: m.ID, Site: m.Site, Voter: m.Voter, Leader: m.ID == leader,
			AdmittedAt: m.AdmittedAt, Addrs: m.Addrs}
		if m.ID == n.id {
			am.Connected = true
		} else if pid, err := peer.Decode(m.ID); err == nil {
			am.Connected = n.host.Network().Connectedness(pid) == network.Connected
		}
		out = append(out, am)
	}
	return out, nil
}

// RemoveMember implements admin.Node.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	return adminError(n.cons.RemoveMember(ctx, id))
}

// Peers implements admin.Node.
func (n *Node) Peers(context.Context) ([]admin.Peer, error) {
	sites := make(map[string]string)
	for _, m := range n.cons.Roster() {
		sites[m.ID] = m.Site
	}
	var out []admin.Peer
	for _, p := range n.host.Network().Peers() {
		ap := admin.Peer{ID: p.String(), Member: n.cons.IsMember(p.String()), Site: sites[p.String()]}
		for _, c := range n.host.Network().ConnsToPeer(p) {
			ap.Addrs = append(ap.Addrs, c.RemoteMultiaddr().String())
		}
		out = append(out, ap)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ProposePolicy implements admin.Node.
func (n *Node) ProposePolicy(ctx context.Context, p intel.Policy) error {
	err := n.cons.Propose(ctx, consensus.Command{Type: consensus.CmdPutPolicy, At: p.CreatedAt, Policy: &p})
	return adminError(err)
}

// RevokePolicy implements admin.Node.
func (n *Node) RevokePolicy(ctx context.Context, id string) error {
	if _, ok := n.cons.Policy(id, time.Now()); !ok {
		return fmt.Errorf("%w: no active mesh-wide policy %q", admin.ErrNotFound, id)
	}
	return adminError(n.cons.Propose(ctx, consensus.Command{Type: consensus.CmdRevokePolicy, PolicyID: id}))
}

// PutLocalDecision implements admin.Node.
func (n *Node) PutLocalDecision(_ context.Context, p intel.Policy) error {
	if err := n.store.PutDecision(p); err != nil {
		return err
	}
	n.stats.local.Add(1)
	n.recon.Trigger()
	return nil
}

// DeleteLocalDecision implements admin.Node.
func (n *Node) DeleteLocalDecision(_ context.Context, id string) error {
	if err := n.store.DeleteDecision(id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: no local decision %q", admin.ErrNotFound, id)
		}
		return err
	}
	n.recon.Trigger()
	return nil
}

// Sightings implements admin.Node.
func (n *Node) Sightings(_ context.Context, limit int) ([]store.SightingRecord, error) {
	return n.store.Sightings(limit)
}

// SightingsFor implements admin.Node.
func (n *Node) SightingsFor(_ context.Context, ind intel.Indicator) ([]store.SightingRecord, error) {
	return n.store.SightingsFor(ind, time.Time{})
}

// adminError maps consensus errors onto the admin API's classes.
func adminError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, consensus.ErrProtected), errors.Is(err, consensus.ErrAllowed), errors.Is(err, consensus.ErrLastVoter):
		return fmt.Errorf("%w: %w", admin.ErrRefused, err)
	case errors.Is(err, consensus.ErrNoLeader), errors.Is(err, consensus.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %w", admin.ErrUnavailable, err)
	case errors.Is(err, consensus.ErrInvalidCommand):
		return fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	return err
}
