package consensus

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"
	"golang.org/x/time/rate"

	"github.com/meshward/meshward/intel"
)

// The join handshake (DESIGN rule 3). A joiner holds the secret of an
// operator-issued join token (Config.JoinToken). It asks the member it
// contacts for the mesh's ID and servers (join_info), lets those servers
// open raft streams to it (allowJoinPeer), and sends its join: its node
// ID, site and listen addresses, the token's public key and
// intel.SignJoin(token key, mesh ID, node ID). The member that serves the
// join first-hand records the addresses it observed the joiner connecting
// from (never the joiner's own claims) and forwards the join to the
// leader, which writes a CmdAdmit carrying the proof and the observed
// addresses; every replica's FSM checks the proof, the token and the
// addresses (roster.go) before the joiner is on the roster. Only then does
// the leader add it to the raft configuration, as a non-voter.
//
// Join attempts (join and join_info, first-hand) are rate-limited per
// remote peer on the member that serves them; refused and failed attempts
// are counted in meshward_transport_refused_total under the raft-rpc
// protocol and a "join_" reason, and logged at debug level, rate-limited.

// Join asks member (any node of the mesh; it forwards to the leader) to
// admit us with cfg.JoinToken. It retries until ctx ends and returns once
// we are on the roster and see ourselves in the raft configuration. A
// token the mesh refuses (unknown, used up, expired, a proof that does not
// verify) returns ErrBadToken at once, with the FSM's reason
// (RefusalReason).
func (c *Consensus) Join(ctx context.Context, member peer.AddrInfo) error {
	if c.inConfig() && c.IsMember(c.cfg.LocalID) {
		return nil
	}
	if member.ID == c.h.ID() {
		return fmt.Errorf("join: %s is this node", member.ID)
	}
	key, err := intel.JoinTokenKey(c.cfg.JoinToken)
	if err != nil {
		return fmt.Errorf("join: consensus.join_token: %w", err)
	}
	if len(member.Addrs) > 0 {
		c.h.Peerstore().AddAddrs(member.ID, member.Addrs, peerstore.PermanentAddrTTL)
	}
	c.allowJoinPeer(member.ID)
	mesh := ""
	var edge *rpcResponse // set when admitted as an edge
	attempt := func(ctx context.Context) error {
		if mesh == "" {
			resp, err := c.callResp(ctx, member.ID, &rpcRequest{Kind: rpcJoinInfo, Node: c.cfg.LocalID})
			if err != nil {
				return err
			}
			if !validMeshID(resp.Mesh) {
				return fmt.Errorf("%w: %s names mesh %q", ErrNoLeader, shortID(member.ID.String()), resp.Mesh)
			}
			c.allowServers(resp.Servers)
			mesh = resp.Mesh
		}
		req := &rpcRequest{Kind: rpcJoin, Node: c.cfg.LocalID, Site: c.cfg.Site, Addrs: c.listenAddrs(),
			TokenKey: key.Public().(ed25519.PublicKey), Proof: intel.SignJoin(key, mesh, c.cfg.LocalID)}
		resp, err := c.callResp(ctx, member.ID, req)
		c.allowServers(resp.Servers)
		if err == nil && resp.Edge {
			edge = &resp
		}
		return err
	}
	if err := c.retry(ctx, attempt); err != nil {
		return fmt.Errorf("join through %s: %w", shortID(member.ID.String()), err)
	}
	if edge != nil && !c.inConfig() {
		n := 0
		for v, as := range edge.VoterAddrs {
			p, err := peer.Decode(v)
			if err != nil || p == c.h.ID() || n == maxJoinPeers {
				continue
			}
			n++
			if addrs := parseAddrs(as); len(addrs) > 0 {
				c.h.Peerstore().AddAddrs(p, addrs, peerstore.PermanentAddrTTL)
			}
		}
		if err := c.startEdge(mesh, edge.Voters); err != nil {
			return fmt.Errorf("join through %s as an edge: %w", shortID(member.ID.String()), err)
		}
		c.log.Info("joined the mesh as an edge", "through", member.ID, "mesh", mesh, "voters", len(edge.Voters))
		return nil
	}
	for !c.inConfig() {
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("join: admitted, but the configuration did not reach us: %w", ctx.Err())
		}
	}
	c.log.Info("joined the mesh", "through", member.ID, "mesh", mesh)
	return nil
}

// allowServers lets the servers a member named open raft streams to this
// node while it joins.
func (c *Consensus) allowServers(ids []string) {
	for i, s := range ids {
		if i == maxJoinPeers {
			return
		}
		if p, err := peer.Decode(s); err == nil && p != c.h.ID() {
			c.allowJoinPeer(p)
		}
	}
}

func validMeshID(s string) bool {
	return (&Init{MeshID: s}).validateMeshID() == nil
}

// joinInfo answers join_info: the mesh's ID and the servers a joiner
// should let open raft streams to it.
func (c *Consensus) joinInfo() (rpcResponse, error) {
	mesh := c.MeshID()
	if mesh == "" {
		return rpcResponse{}, fmt.Errorf("%w: the mesh is not initialised yet", ErrNoLeader)
	}
	return rpcResponse{Mesh: mesh, Servers: c.joinServers()}, nil
}

// joinServers names the voters of the configuration and the leader, at
// most maxJoinPeers: the peers that may replicate to a joiner.
func (c *Consensus) joinServers() []string {
	if c.IsEdge() { // in no configuration: the voters it applied
		voters, _ := c.chainServers()
		return voters[:min(len(voters), maxJoinPeers)]
	}
	var out []string
	if _, id := c.raft.LeaderWithID(); id != "" {
		out = append(out, string(id))
	}
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter && !slices.Contains(out, string(s.ID)) && len(out) < maxJoinPeers {
				out = append(out, string(s.ID))
			}
		}
	}
	return out
}

// joinOnce admits a joiner if we lead, or forwards the request to the
// leader. The leader writes the proof-carrying CmdAdmit (refused early,
// with Apply's reason, when Apply would refuse it), then adds the new
// member to the configuration as a non-voter. A joiner on the roster
// already (a retried join, a restarted member) needs no proof: nothing is
// written, and it is added to the configuration if it is missing.
func (c *Consensus) joinOnce(ctx context.Context, req *rpcRequest) (rpcResponse, error) {
	if c.raft.State() != raft.Leader {
		leader, err := c.leaderPeer()
		if err != nil {
			return rpcResponse{}, err
		}
		if req.Hops >= maxHops {
			return rpcResponse{}, fmt.Errorf("%w: %d", ErrTooManyHops, req.Hops)
		}
		fwd := *req
		fwd.Hops++
		resp, err := c.callResp(ctx, leader, &fwd)
		if err == nil && !slices.Contains(resp.Servers, leader.String()) && len(resp.Servers) < maxJoinPeers {
			resp.Servers = append(resp.Servers, leader.String())
		}
		return resp, err
	}
	id, err := peer.Decode(req.Node)
	if err != nil {
		return rpcResponse{}, fmt.Errorf("%w: joiner id %q: %v", ErrInvalidCommand, req.Node, err)
	}
	if !c.IsMember(req.Node) {
		cmd := Command{Type: CmdAdmit, At: time.Now().UTC(),
			Member: &Member{ID: req.Node, Site: req.Site, Addrs: addrStrings(parseAddrs(req.Addrs)), Observed: req.Observed},
			Join:   &JoinProof{TokenKey: req.TokenKey, Sig: req.Proof}}
		if rerr := cmd.validate(); rerr != nil {
			c.fsm.count(rerr, 0)
			return rpcResponse{}, rerr
		}
		data, err := cmd.Encode()
		if err != nil {
			return rpcResponse{}, err
		}
		// A concurrent attempt of the same joiner may have admitted it.
		if err := c.applyLocal(ctx, data); err != nil && RefusalReason(err) != "already_member" {
			return rpcResponse{}, err
		}
		c.log.Info("admitted a member", "node", req.Node, "site", req.Site, "observed", req.Observed)
	}
	if addrs := parseAddrs(req.Addrs); len(addrs) > 0 {
		c.h.Peerstore().AddAddrs(id, addrs, peerstore.PermanentAddrTTL)
	}
	if !c.knownInConfig(req.Node) && c.serversFull() {
		// An edge: on the roster, not a raft peer (edge.go).
		// The addresses of every server, standbys too: a standby
		// promoted while the edge catches up is a voter it must ask.
		voters := c.configVoters()
		addrs := map[string][]string{}
		for _, v := range c.configServerIDs() {
			if m, ok := c.fsm.member(v); ok && len(m.Addrs) > 0 && len(addrs) < maxJoinPeers {
				addrs[v] = m.Addrs
			}
		}
		c.log.Info("admitted a member as an edge", "node", req.Node)
		return rpcResponse{Mesh: c.MeshID(), Servers: c.joinServers(), Edge: true, Voters: voters, VoterAddrs: addrs}, nil
	}
	// A raft server to be: its connection is protected (an edge's is
	// not, peerLoop).
	c.h.ConnManager().Protect(id, connProtectTag)
	if err := c.addNonvoter(ctx, req.Node); err != nil {
		return rpcResponse{}, err
	}
	return rpcResponse{Mesh: c.MeshID(), Servers: c.joinServers()}, nil
}

// addNonvoter adds a member to the configuration as a non-voter unless it
// is a server already (a retried join keeps its suffrage). The membership
// loop promotes it once it has proven reachable (membership.go).
func (c *Consensus) addNonvoter(ctx context.Context, id string) error {
	if c.knownInConfig(id) {
		return nil
	}
	timeout := attemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if err := waitFuture(ctx, c.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(id), 0, timeout)); err != nil {
		return fmt.Errorf("add %s to the configuration: %w", shortID(id), err)
	}
	c.log.Info("added to the configuration as a non-voter", "node", id)
	return nil
}

// observedAddrs are the host prefixes this node sees peer p connecting
// from: the stream's connection first, then p's other connections, at
// most maxObserved, relayed connections left out.
func (c *Consensus) observedAddrs(s network.Stream) []string {
	var out []string
	add := func(a multiaddr.Multiaddr) {
		if p, ok := hostPrefix(a); ok && !slices.Contains(out, p) && len(out) < maxObserved {
			out = append(out, p)
		}
	}
	add(s.Conn().RemoteMultiaddr())
	for _, conn := range c.h.Network().ConnsToPeer(s.Conn().RemotePeer()) {
		add(conn.RemoteMultiaddr())
	}
	return out
}

// hostPrefix is the host prefix ("203.0.113.7/32") of the IP a multiaddr
// starts with; relayed addresses have none.
func hostPrefix(a multiaddr.Multiaddr) (string, bool) {
	if a == nil {
		return "", false
	}
	if _, err := a.ValueForProtocol(multiaddr.P_CIRCUIT); err == nil {
		return "", false
	}
	for _, proto := range []int{multiaddr.P_IP4, multiaddr.P_IP6} {
		v, err := a.ValueForProtocol(proto)
		if err != nil {
			continue
		}
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return "", false
		}
		ip = ip.Unmap().WithZone("")
		if ip.IsUnspecified() || ip.IsMulticast() {
			return "", false
		}
		return netip.PrefixFrom(ip, ip.BitLen()).String(), true
	}
	return "", false
}

// ownObserved are the founding node's own addresses, for its roster entry:
// the host prefixes of its listen addresses, those that become protected
// first, at most maxObserved.
func (c *Consensus) ownObserved() []string {
	var protect, rest []string
	for _, a := range c.h.Addrs() {
		p, ok := hostPrefix(a)
		if !ok || slices.Contains(protect, p) || slices.Contains(rest, p) {
			continue
		}
		if protectable(netip.MustParsePrefix(p).Addr()) {
			protect = append(protect, p)
		} else {
			rest = append(rest, p)
		}
	}
	out := append(protect, rest...)
	return out[:min(len(out), maxObserved)]
}

// Join attempts are limited per remote peer: joinRate a second with
// bursts of joinBurst, for at most maxJoinLimiters peers at once.
const (
	joinRate        = 1
	joinBurst       = 3
	maxJoinLimiters = 1024
)

// joinLimiter is a bounded map of token buckets, one per remote peer.
type joinLimiter struct {
	mu      sync.Mutex
	buckets map[peer.ID]*rate.Limiter
}

// allow takes one token of p's bucket. When the map is full, the buckets
// that have refilled (peers idle for joinBurst/joinRate seconds) are
// dropped; if none has, an arbitrary one is.
func (l *joinLimiter) allow(p peer.ID, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[p]
	if !ok {
		if l.buckets == nil {
			l.buckets = map[peer.ID]*rate.Limiter{}
		}
		if len(l.buckets) >= maxJoinLimiters {
			for q, qb := range l.buckets {
				if qb.TokensAt(now) >= joinBurst {
					delete(l.buckets, q)
				}
			}
			for q := range l.buckets {
				if len(l.buckets) < maxJoinLimiters {
					break
				}
				delete(l.buckets, q)
			}
		}
		b = rate.NewLimiter(joinRate, joinBurst)
		l.buckets[p] = b
	}
	return b.AllowN(now, 1)
}

func (c *Consensus) inConfig() bool {
	return c.knownInConfig(c.cfg.LocalID)
}

func (c *Consensus) knownInConfig(id string) bool {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// knownPeer reports whether id is on the roster or in the configuration.
func (c *Consensus) knownPeer(id string) bool {
	return c.IsMember(id) || c.knownInConfig(id)
}

func (c *Consensus) listenAddrs() []string {
	var out []string
	for _, a := range c.h.Addrs() {
		if len(out) == maxMemberAddrs {
			break
		}
		out = append(out, a.String())
	}
	return out
}

func parseAddrs(ss []string) []multiaddr.Multiaddr {
	var out []multiaddr.Multiaddr
	for _, s := range ss {
		if len(out) == maxMemberAddrs {
			break
		}
		if a, err := multiaddr.NewMultiaddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func addrStrings(as []multiaddr.Multiaddr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// voterCommand is the leader's record of a member's suffrage: its roster
// entry unchanged but for the Voter flag.
func voterCommand(m Member, voter bool) []byte {
	cmd := Command{Type: CmdAdmit, At: time.Now().UTC(),
		Member: &Member{ID: m.ID, Site: m.Site, Voter: voter, Addrs: m.Addrs, Observed: m.Observed}}
	b, err := cmd.Encode()
	if err != nil {
		panic(err) // a member is far below the size limit
	}
	return b
}
