package consensus

import (
	"context"
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"
)

// Join asks member (any node of the mesh; it forwards to the leader) to
// admit us, presenting cfg.JoinToken. It retries until ctx ends and returns
// once the leader has admitted us to the roster and we see ourselves in the
// raft configuration. A wrong token returns ErrBadToken at once.
func (c *Consensus) Join(ctx context.Context, member peer.AddrInfo) error {
	if c.inConfig() && c.IsMember(c.cfg.LocalID) {
		return nil
	}
	if member.ID == c.h.ID() {
		return fmt.Errorf("join: %s is this node", member.ID)
	}
	if len(member.Addrs) > 0 {
		c.h.Peerstore().AddAddrs(member.ID, member.Addrs, peerstore.PermanentAddrTTL)
	}
	req := &rpcRequest{Kind: rpcJoin, Token: c.cfg.JoinToken, Node: c.cfg.LocalID, Site: c.cfg.Site, Addrs: c.listenAddrs()}
	if err := c.retry(ctx, func(ctx context.Context) error { return c.call(ctx, member.ID, req) }); err != nil {
		return fmt.Errorf("join through %s: %w", shortID(member.ID.String()), err)
	}
	for !c.inConfig() {
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("join: admitted, but the configuration did not reach us: %w", ctx.Err())
		}
	}
	c.log.Info("joined the mesh", "through", member.ID)
	return nil
}

// joinOnce admits a joiner if we lead, or forwards the request.
//
// LEGACY ADMISSION (issue 11): the leader checks the shared join token and
// writes the joiner's CmdAdmit on its own word; the join handshake with
// operator-issued tokens, proven in the entry, replaces this.
func (c *Consensus) joinOnce(ctx context.Context, req *rpcRequest) error {
	if c.raft.State() != raft.Leader {
		leader, err := c.leaderPeer()
		if err != nil {
			return err
		}
		if req.Hops >= maxHops {
			return fmt.Errorf("%w: %d", ErrTooManyHops, req.Hops)
		}
		fwd := *req
		fwd.Hops++
		return c.call(ctx, leader, &fwd)
	}
	if c.cfg.JoinToken == "" {
		return ErrJoinDisabled
	}
	if subtle.ConstantTimeCompare([]byte(req.Token), []byte(c.cfg.JoinToken)) != 1 {
		c.log.Warn("join refused: bad token", "node", req.Node)
		return ErrBadToken
	}
	id, err := peer.Decode(req.Node)
	if err != nil {
		return fmt.Errorf("%w: joiner id %q: %v", ErrInvalidCommand, req.Node, err)
	}
	if len(req.Site) > maxSiteLen {
		return fmt.Errorf("%w: site is %d bytes, limit %d", ErrInvalidCommand, len(req.Site), maxSiteLen)
	}
	addrs := parseAddrs(req.Addrs)
	if len(addrs) > 0 {
		c.h.Peerstore().AddAddrs(id, addrs, peerstore.PermanentAddrTTL)
	}
	c.h.ConnManager().Protect(id, connProtectTag)
	addrStrs := make([]string, len(addrs))
	for i, a := range addrs {
		addrStrs[i] = a.String()
	}

	cf := c.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	// A joiner starts as a non-voter; the membership loop promotes it once
	// it has proven reachable (membership.go). A node already in the
	// configuration (a retried join) keeps its suffrage.
	voter, present := false, false
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == req.Node {
			present, voter = true, s.Suffrage == raft.Voter
		}
	}
	if _, ok := c.fsm.member(req.Node); ok && present {
		return nil // a retried join: admitted already
	}
	if !present {
		timeout := attemptTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		sid, saddr := raft.ServerID(req.Node), raft.ServerAddress(req.Node)
		if err := c.raft.AddNonvoter(sid, saddr, 0, timeout).Error(); err != nil {
			return fmt.Errorf("add %s to the configuration: %w", shortID(req.Node), err)
		}
		c.log.Info("added to the configuration as a non-voter", "node", req.Node, "site", req.Site)
	}
	return c.applyLocal(ctx, c.admitCommand(req.Node, req.Site, voter, addrStrs))
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

func (c *Consensus) admitCommand(id, site string, voter bool, addrs []string) []byte {
	cmd := Command{Type: CmdAdmit, At: time.Now().UTC(), Member: &Member{ID: id, Site: site, Voter: voter, Addrs: addrs}}
	b, err := cmd.Encode()
	if err != nil {
		panic(err) // a member is far below the size limit
	}
	return b
}
