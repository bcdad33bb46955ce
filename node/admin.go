package node

import (
	"context"
	"crypto/ed25519"
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
	"github.com/meshward/meshward/intel/warninglist"
	"github.com/meshward/meshward/store"
)

// adminAPI is the node as the admin API sees it: one small type per noun
// of the API, each a view of the node.
type adminAPI struct {
	statusAPI
	memberAPI
	policyAPI
	sightingAPI
	reportAPI
	operatorAPI
	riskAPI
}

type (
	statusAPI   struct{ n *Node }
	memberAPI   struct{ n *Node }
	policyAPI   struct{ n *Node }
	sightingAPI struct{ n *Node }
	reportAPI   struct{ n *Node }
	operatorAPI struct{ n *Node }
)

var (
	_ admin.Node            = (*adminAPI)(nil)
	_ admin.StatusService   = statusAPI{}
	_ admin.MemberService   = memberAPI{}
	_ admin.PolicyService   = policyAPI{}
	_ admin.SightingService = sightingAPI{}
	_ admin.ReportService   = reportAPI{}
	_ admin.OperatorService = operatorAPI{}
)

func newAdminAPI(n *Node) *adminAPI {
	return &adminAPI{statusAPI{n}, memberAPI{n}, policyAPI{n}, sightingAPI{n}, reportAPI{n}, operatorAPI{n}, riskAPI{n}}
}

// ID is the node's ID.
func (a statusAPI) ID() string { return a.n.deps.ID }

// Status reports this node and the mesh as this node sees it.
func (a statusAPI) Status(context.Context) (admin.Status, error) {
	n := a.n
	st := n.Stats()
	cons := n.deps.Consensus
	cs := cons.Stats()
	num := func(k string) uint64 { v, _ := strconv.ParseUint(cs[k], 10, 64); return v }
	var voters []string
	roster := cons.Roster()
	for _, m := range roster {
		if m.Voter {
			voters = append(voters, m.ID)
		}
	}
	sort.Strings(voters)
	var protected []string
	for _, p := range n.state.Protected() {
		protected = append(protected, p.String())
	}
	s := admin.Status{
		Node: admin.NodeStatus{
			ID: n.deps.ID, Site: n.deps.Config.Site, Version: n.deps.Options.Version, Addrs: n.Addrs(), StartedAt: n.started,
			Counters: st.counterMap(),
		},
		Mesh: admin.MeshStatus{
			Leader: cons.Leader(), IsLeader: cons.IsLeader(), RaftState: cs["state"],
			Term: num("term"), CommitIndex: num("commit_index"), AppliedIndex: num("applied_index"),
			Voters: voters, Members: len(roster), Peers: len(n.deps.Host.Network().Peers()),
			Policies: cons.PolicyCount(), Protected: protected, Kind: cs["kind"],
		},
		Health: admin.Health{OK: true},
	}
	if cons.IsEdge() { // no raft peer: it applies what the voters certify
		s.Mesh.AppliedIndex = num("edge_applied_index")
	} else if s.Mesh.Leader == "" {
		s.Health.Problems = append(s.Health.Problems, "no leader known: mesh-wide changes cannot commit")
	}
	if !cons.IsMember(n.deps.ID) {
		s.Health.Problems = append(s.Health.Problems, "this node is not on the roster yet: its sightings are not heard")
	}
	if s.Mesh.Peers == 0 && len(roster) > 1 {
		s.Health.Problems = append(s.Health.Problems, "no connected peers")
	}
	s.Health.OK = len(s.Health.Problems) == 0
	return s, nil
}

// Members lists the roster.
func (a memberAPI) Members(context.Context) ([]admin.Member, error) {
	n := a.n
	leader := n.deps.Consensus.Leader()
	kinds := map[string]string{}
	for _, ms := range n.deps.Consensus.Members() {
		kinds[ms.ID] = string(ms.Kind)
	}
	var out []admin.Member
	for _, m := range n.deps.Consensus.Roster() {
		trust := n.deps.Consensus.SiteTrust(m.ID)
		am := admin.Member{ID: m.ID, Site: m.Site, Voter: m.Voter, Leader: m.ID == leader, Kind: kinds[m.ID],
			AdmittedAt: m.AdmittedAt, Addrs: m.Addrs, Trust: &trust}
		if m.ID == n.deps.ID {
			am.Connected = true
		} else if pid, err := peer.Decode(m.ID); err == nil {
			am.Connected = n.deps.Host.Network().Connectedness(pid) == network.Connected
		}
		out = append(out, am)
	}
	return out, nil
}

// RemoveMember refuses: removing a member is a mesh-wide change, which
// needs an operator's signature (an operator command, SubmitOperator).
func (a memberAPI) RemoveMember(context.Context, string) error {
	return fmt.Errorf("%w: %s", admin.ErrRefused, errNeedsOperator("meshward operator sign remove_member"))
}

// errNeedsOperator is the refusal of an unsigned mesh-wide change.
func errNeedsOperator(then string) error {
	return fmt.Errorf("mesh-wide changes need an operator signature: make a key with `meshward operator keygen`, have an admin operator register it (`meshward operator add`), then sign the change (%s)", then)
}

// Peers lists the connected libp2p peers.
func (a memberAPI) Peers(context.Context) ([]admin.Peer, error) {
	cons, nw := a.n.deps.Consensus, a.n.deps.Host.Network()
	sites := make(map[string]string)
	for _, m := range cons.Roster() {
		sites[m.ID] = m.Site
	}
	var out []admin.Peer
	for _, p := range nw.Peers() {
		ap := admin.Peer{ID: p.String(), Member: cons.IsMember(p.String()), Site: sites[p.String()]}
		for _, c := range nw.ConnsToPeer(p) {
			ap.Addrs = append(ap.Addrs, c.RemoteMultiaddr().String())
		}
		out = append(out, ap)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// MeshPolicy returns the mesh-wide policy with this ID if it is in force
// at now.
func (a policyAPI) MeshPolicy(id string, now time.Time) (intel.Policy, bool) {
	return a.n.deps.Consensus.Policy(id, now)
}

// MeshPolicyPage returns a page of the mesh-wide policies in force at now,
// in ID order after after, and the ID to continue after ("" at the end).
func (a policyAPI) MeshPolicyPage(after string, limit int, now time.Time) ([]intel.Policy, string) {
	return a.n.deps.Consensus.PolicyPage(after, limit, now)
}

// LocalDecisions are this node's local decisions in force at now.
func (a policyAPI) LocalDecisions(now time.Time) []intel.Policy { return a.n.state.LocalDecisions(now) }

// ProposePolicy refuses: a mesh-wide policy is an operator command
// (SubmitOperator) or an automatic block proven by sightings.
func (a policyAPI) ProposePolicy(_ context.Context, p intel.Policy) error {
	return fmt.Errorf("%w: %w", admin.ErrRefused, errNeedsOperator("meshward policy "+string(p.Action)+" "+p.Indicator.Value))
}

// RevokePolicy refuses: revoking a mesh-wide policy is an operator
// command (SubmitOperator).
func (a policyAPI) RevokePolicy(_ context.Context, id string) error {
	return fmt.Errorf("%w: %w", admin.ErrRefused, errNeedsOperator("meshward policy revoke "+id))
}

// MeshID is the ID of the mesh this node belongs to ("" before the
// founder's initialisation entry reached it).
func (a operatorAPI) MeshID() string { return a.n.deps.Consensus.MeshID() }

// SubmitOperator commits an operator-signed command mesh-wide; the FSM
// checks the signature, the key, its role, the mesh, the time window, the
// nonce and the command's own rules.
func (a operatorAPI) SubmitOperator(ctx context.Context, s intel.OperatorSigned) error {
	return operatorError(a.n.deps.Consensus.ProposeOperator(ctx, s))
}

// Operators lists the mesh's operator keys.
func (a operatorAPI) Operators() []admin.OperatorInfo {
	ops := a.n.deps.Consensus.Operators()
	out := make([]admin.OperatorInfo, 0, len(ops))
	for _, o := range ops {
		out = append(out, admin.OperatorInfo{KeyID: o.KeyID, Name: o.Name, Role: o.Role,
			PublicKey: intel.FormatOperatorPublicKey(ed25519.PublicKey(o.Key)), AddedAt: o.AddedAt, AddedBy: o.AddedBy})
	}
	return out
}

// FeedPolicies lists the mesh's feed policies.
func (a operatorAPI) FeedPolicies() []intel.FeedPolicy { return a.n.deps.Consensus.FeedPolicies() }

// Warninglist lists the entries operators added to the warninglist.
func (a operatorAPI) Warninglist() []warninglist.Entry { return a.n.deps.Consensus.Warninglist() }

var _ admin.FeedPolicySource = operatorAPI{}

// JoinTokens lists the mesh's join tokens.
func (a operatorAPI) JoinTokens() []admin.JoinTokenInfo {
	toks := a.n.deps.Consensus.JoinTokens()
	out := make([]admin.JoinTokenInfo, 0, len(toks))
	for _, t := range toks {
		out = append(out, admin.JoinTokenInfo{ID: t.ID, Uses: t.Uses, Used: t.Used, Expires: t.Expires, CreatedBy: t.CreatedBy})
	}
	return out
}

// operatorError maps the mesh's refusal of an operator command onto the
// admin API's classes by its reason.
func operatorError(err error) error {
	if err == nil {
		return nil
	}
	switch consensus.RefusalReason(err) {
	case "":
		return adminError(err)
	case "bad_signature", "not_operator", "node_key", "role", "replayed_nonce", "wrong_mesh":
		return fmt.Errorf("%w: %w", admin.ErrForbidden, err)
	case "expired", "malformed", "clock_skew", "not_initialised":
		return fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	case "unknown_operator", "unknown_feed_policy", "unknown_warninglist_entry":
		return fmt.Errorf("%w: %w", admin.ErrNotFound, err)
	case "nonce_table_full":
		return fmt.Errorf("%w: %w", admin.ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %w", admin.ErrRefused, err) // protected, allowed, floor, ttl_cap, last_admin, ...
}

// PutLocalDecision stores a local decision and has the responders
// enforce it.
func (a policyAPI) PutLocalDecision(_ context.Context, p intel.Policy) error {
	return a.n.putDecision(p)
}

// DeleteLocalDecision deletes a local decision and has the responders
// lift it.
func (a policyAPI) DeleteLocalDecision(_ context.Context, id string) error {
	if err := a.n.deps.Store.DeleteDecision(id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: no local decision %q", admin.ErrNotFound, id)
		}
		return fmt.Errorf("delete local decision: %w", err)
	}
	a.n.reconciler().Trigger()
	return nil
}

// Sightings returns up to limit stored sightings, newest first.
func (a sightingAPI) Sightings(_ context.Context, limit int) ([]store.SightingRecord, error) {
	return a.n.deps.Store.Sightings(limit)
}

// SightingsFor returns the stored sightings of one indicator.
func (a sightingAPI) SightingsFor(_ context.Context, ind intel.Indicator) ([]store.SightingRecord, error) {
	return a.n.deps.Store.SightingsFor(ind, time.Time{})
}

// PublishReport signs, stores and gossips an indicator report.
func (a reportAPI) PublishReport(ctx context.Context, r intel.IndicatorReport) (uint64, error) {
	return a.n.PublishReport(ctx, r)
}

// Reports returns up to limit indicator reports held here, newest first.
func (a reportAPI) Reports(_ context.Context, limit int) ([]store.ReportRecord, error) {
	return a.n.deps.Store.IndicatorReports(limit)
}

// adminError maps consensus errors onto the admin API's classes.
func adminError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, consensus.ErrProtected), errors.Is(err, consensus.ErrAllowed), errors.Is(err, consensus.ErrLastVoter),
		errors.Is(err, consensus.ErrRefused):
		return fmt.Errorf("%w: %w", admin.ErrRefused, err)
	case errors.Is(err, consensus.ErrNoLeader), errors.Is(err, consensus.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %w", admin.ErrUnavailable, err)
	case errors.Is(err, consensus.ErrInvalidCommand):
		return fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	return err
}
