package consensus

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The raft-rpc protocol: one request and one response per stream, each a
// 4-byte big-endian length followed by that many bytes of JSON.
const (
	maxRPCSize = 1 << 20
	// maxHops bounds how often a request is forwarded towards the leader.
	maxHops = 3
	// rpcTimeout bounds one call when the caller's context has no deadline,
	// and how long a server spends on one request.
	rpcTimeout = 10 * time.Second
)

type rpcKind string

const (
	rpcJoin rpcKind = "join"
	// rpcJoinInfo asks a member for the mesh's ID and servers, which a
	// joiner needs before it can sign its join.
	rpcJoinInfo rpcKind = "join_info"
	rpcPropose  rpcKind = "propose"
	// rpcProposeBatch forwards several proposals at once (forward.go).
	rpcProposeBatch rpcKind = "propose_batch"
	// rpcReadIndex asks the leader for a read index (see ReadPolicies).
	rpcReadIndex rpcKind = "read_index"
)

type rpcRequest struct {
	Kind rpcKind `json:"kind"`
	// Hops counts forwards so far: 0 when sent by the originator.
	Hops int `json:"hops"`

	// Join: the joiner's node ID, site and listen addresses (for
	// connectivity only), and its proof: the join token's public key and
	// intel.SignJoin over the mesh's ID and the node ID. Observed is set
	// by the member that serves the join first-hand (whatever the joiner
	// sent is replaced): the addresses it saw the joiner connect from.
	Node     string   `json:"node,omitempty"`
	Site     string   `json:"site,omitempty"`
	Addrs    []string `json:"addrs,omitempty"`
	TokenKey []byte   `json:"token_key,omitempty"`
	Proof    []byte   `json:"proof,omitempty"`
	Observed []string `json:"observed,omitempty"`

	// Propose: an encoded Command.
	Command []byte `json:"command,omitempty"`
	// Propose batch: encoded Commands.
	Commands [][]byte `json:"commands,omitempty"`
}

type rpcResponse struct {
	Code  string `json:"code,omitempty"` // empty on success
	Error string `json:"error,omitempty"`
	// Reason is a refusal's reason (RefusalReason).
	Reason string `json:"reason,omitempty"`
	// Index answers a read_index request.
	Index uint64 `json:"index,omitempty"`
	// Mesh and Servers answer join_info and join: the mesh's ID and the
	// servers (the leader and the voters) a joiner lets open raft
	// streams to it.
	Mesh    string   `json:"mesh,omitempty"`
	Servers []string `json:"servers,omitempty"`
	// Edge answers a join: the joiner was admitted as an edge (the
	// servers are all there), and Voters is the voter set it anchors its
	// certify.Edge on (edge.go).
	Edge   bool     `json:"edge,omitempty"`
	Voters []string `json:"voters,omitempty"`
	// VoterAddrs are the servers' listen addresses (voters and standbys,
	// at most maxJoinPeers) as the roster holds them, for an edge that
	// knows no peer but the one it joined through: a standby may be a
	// voter by the time the edge asks for a certified snapshot.
	VoterAddrs map[string][]string `json:"voter_addrs,omitempty"`
	// Results answer propose_batch: one per command, in order.
	Results []rpcResponse `json:"results,omitempty"`
}

// errorCodes carry sentinel errors across the wire, so that errors.Is works
// on the proposer for an error raised on the leader.
var errorCodes = []struct {
	code string
	err  error
}{
	{"protected", ErrProtected},
	{"refused", ErrRefused},
	{"allowed", ErrAllowed},
	{"not_member", ErrNotMember},
	{"bad_token", ErrBadToken},
	{"rate_limited", ErrRateLimited},
	{"invalid", ErrInvalidCommand},
	{"no_leader", ErrNoLeader},
	{"too_many_hops", ErrTooManyHops},
	{"last_voter", ErrLastVoter},
}

func responseFor(err error) rpcResponse {
	if err == nil {
		return rpcResponse{}
	}
	reason := RefusalReason(err)
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return rpcResponse{Code: c.code, Error: err.Error(), Reason: reason}
		}
	}
	return rpcResponse{Code: "internal", Error: err.Error(), Reason: reason}
}

func (r rpcResponse) err(from peer.ID) error {
	if r.Code == "" {
		return nil
	}
	for _, c := range errorCodes {
		if r.Code == c.code {
			return &remoteError{sentinel: c.err, msg: r.Error, from: from, reason: r.Reason}
		}
	}
	return &remoteError{msg: r.Error, from: from, reason: r.Reason}
}

// remoteError is an error reported by another node. It unwraps to the
// sentinel its code named, if any.
type remoteError struct {
	sentinel error
	msg      string
	from     peer.ID
	reason   string
}

func (e *remoteError) Error() string {
	return fmt.Sprintf("node %s: %s", shortID(e.from.String()), e.msg)
}
func (e *remoteError) Unwrap() error { return e.sentinel }

func writeMsg(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode rpc message: %w", err)
	}
	if len(b) > maxRPCSize {
		return fmt.Errorf("rpc message is %d bytes, limit %d", len(b), maxRPCSize)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write rpc message: %w", err)
	}
	return nil
}

func readMsg(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("read rpc header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxRPCSize {
		return fmt.Errorf("rpc message is %d bytes, limit %d", n, maxRPCSize)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("read rpc body: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode rpc message: %w", err)
	}
	return nil
}

// call sends req to a peer and returns the error it answered with.
// Cancelling ctx resets the stream.
func (c *Consensus) call(ctx context.Context, to peer.ID, req *rpcRequest) error {
	_, err := c.callResp(ctx, to, req)
	return err
}

// callResp is call that also returns the response.
func (c *Consensus) callResp(ctx context.Context, to peer.ID, req *rpcRequest) (rpcResponse, error) {
	if to == c.h.ID() {
		return rpcResponse{}, fmt.Errorf("%s rpc to ourselves", req.Kind)
	}
	return callPeer(ctx, c.h, to, req)
}

// callPeer sends req from h to a peer over RPCProtocol and returns the
// response and the error it answered with. Cancelling ctx resets the
// stream.
func callPeer(ctx context.Context, h host.Host, to peer.ID, req *rpcRequest) (rpcResponse, error) {
	s, err := h.NewStream(ctx, to, RPCProtocol)
	if err != nil {
		return rpcResponse{}, fmt.Errorf("open %s stream to %s: %w", req.Kind, shortID(to.String()), err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(rpcTimeout)
	}
	_ = s.SetDeadline(dl)
	if err := writeMsg(s, req); err != nil {
		_ = s.Reset()
		return rpcResponse{}, fmt.Errorf("%s to %s: %w", req.Kind, shortID(to.String()), err)
	}
	_ = s.CloseWrite()
	var resp rpcResponse
	if err := readMsg(s, &resp); err != nil {
		_ = s.Reset()
		return rpcResponse{}, fmt.Errorf("%s to %s: %w", req.Kind, shortID(to.String()), err)
	}
	_ = s.Close()
	return resp, resp.err(to)
}

// handleRPC serves one raft-rpc stream, as a goroutine of the group so
// that Close waits for it.
func (c *Consensus) handleRPC(s network.Stream) {
	done := make(chan struct{})
	if c.isClosed() || !c.group.Go(func(ctx context.Context) {
		defer close(done)
		c.serveStream(ctx, s)
	}) {
		_ = s.Reset()
		return
	}
	<-done
}

func (c *Consensus) serveStream(ctx context.Context, s network.Stream) {
	_ = s.SetDeadline(time.Now().Add(rpcTimeout + 2*time.Second))
	from := s.Conn().RemotePeer()
	var req rpcRequest
	if err := readMsg(io.LimitReader(s, maxRPCSize+4), &req); err != nil {
		c.refuseStream(RPCProtocol, RefusedMalformed, from, err)
		_ = s.Reset()
		return
	}
	if req.Kind == rpcJoin && req.Hops == 0 {
		req.Observed = c.observedAddrs(s)
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := c.serve(ctx, from, &req)
	if err != nil {
		resp = responseFor(err)
		if (req.Kind == rpcJoin || req.Kind == rpcJoinInfo) && req.Hops == 0 {
			c.refuseStream(RPCProtocol, joinFailure(err), from, err)
		} else if !errors.Is(err, ErrNotMember) {
			c.log.Debug("rpc failed", "kind", req.Kind, "from", from, "hops", req.Hops, "err", err)
		}
	}
	if err := writeMsg(s, resp); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// Reasons the raft-rpc protocol refuses a request, besides
// RefusedNotMember: meshward_transport_refused_total{protocol=
// "/meshward/raft-rpc/1"}.
const (
	// RefusedMalformed: the request could not be read.
	RefusedMalformed = "malformed"
	// RefusedJoinRateLimited: the peer's join attempts exceed its budget.
	RefusedJoinRateLimited = "join_rate_limited"
)

// joinFailure is the reason a first-hand join attempt failed: "join_"
// and the FSM's refusal reason (join_token_used, join_bad_proof, ...) or
// the kind of failure. The reasons come from fixed sets, so the series
// stay few.
func joinFailure(err error) string {
	if errors.Is(err, ErrRateLimited) {
		return RefusedJoinRateLimited
	}
	if r := RefusalReason(err); r != "" {
		return "join_" + r
	}
	for _, c := range []struct {
		err    error
		reason string
	}{{ErrNotMember, "join_not_member"}, {ErrNoLeader, "join_no_leader"}, {ErrTooManyHops, "join_too_many_hops"},
		{ErrInvalidCommand, "join_malformed"}, {ErrBadToken, "join_bad_token"}} {
		if errors.Is(err, c.err) {
			return c.reason
		}
	}
	return "join_failed"
}

// serve answers one request: the response's content, or an error.
func (c *Consensus) serve(ctx context.Context, from peer.ID, req *rpcRequest) (rpcResponse, error) {
	if req.Hops < 0 || req.Hops > maxHops {
		return rpcResponse{}, fmt.Errorf("%w: %d hops", ErrTooManyHops, req.Hops)
	}
	joining := req.Kind == rpcJoin || req.Kind == rpcJoinInfo
	// Only a join may come from outside the mesh, and only first-hand.
	if (req.Hops > 0 || !joining) && !c.knownPeer(from.String()) {
		err := fmt.Errorf("%w: %s sent a %s (hops %d)", ErrNotMember, from, req.Kind, req.Hops)
		c.refuseStream(RPCProtocol, RefusedNotMember, from, err)
		return rpcResponse{}, err
	}
	if joining && req.Hops == 0 {
		if req.Node != from.String() {
			return rpcResponse{}, fmt.Errorf("%w: %s for %s sent by %s", ErrInvalidCommand, req.Kind, req.Node, from)
		}
		if !c.joins.allow(from, time.Now()) {
			return rpcResponse{}, fmt.Errorf("%w: %s", ErrRateLimited, from)
		}
	}
	switch req.Kind {
	case rpcPropose:
		cmd, err := c.staticCheck(req.Command)
		if err != nil {
			return rpcResponse{}, err
		}
		return rpcResponse{}, c.proposeOnce(ctx, req.Command, &cmd, req.Hops)
	case rpcProposeBatch:
		return c.proposeBatch(ctx, req)
	case rpcJoin:
		return c.joinOnce(ctx, req)
	case rpcJoinInfo:
		return c.joinInfo()
	case rpcReadIndex:
		index, err := c.readIndexOnce(ctx, req.Hops)
		return rpcResponse{Index: index}, err
	}
	return rpcResponse{}, fmt.Errorf("%w: %s %q", ErrInvalidCommand, unknownRPC, req.Kind)
}

// unknownRPC names a request kind the server does not serve, in the
// error it answers with (forward.go falls back on it).
const unknownRPC = "unknown rpc"
