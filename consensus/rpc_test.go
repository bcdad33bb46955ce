package consensus

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/meshward/meshward/intel"
)

// TestRPCGuards sends hand-made raft-rpc requests to the leader, from a
// member and from a host outside the mesh, and checks the guards of serve:
// the bound on forwarding hops (either side of it, and negative counts,
// which would otherwise pass an outsider's join off as forwarded) and the
// refusal of a first-hand join made for another node's ID. Every refused
// request would be served, and change the mesh, without its guard.
func TestRPCGuards(t *testing.T) {
	nodes := newCluster(t, 2)
	leader, member := leaderOf(nodes), followerOf(nodes)
	if leader == nil || member == nil {
		t.Fatal("no leader and follower in a 2-node cluster")
	}
	outsider := newTestHost(t, newKey(t), nil)
	other := newTestHost(t, newKey(t), nil) // never asks to join
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := outsider.Connect(ctx, leader.info()); err != nil {
		t.Fatal(err)
	}
	block := func(ip string) (string, []byte) {
		cmd := proveBlock(t, ip, leader, member)
		b, err := cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return cmd.Policy.ID, b
	}
	secret := leader.joinSecret(t, 1)
	join := func(h host.Host, node string, hops int) rpcRequest {
		return joinRequest(t, secret, leader.c.MeshID(), node, hops)
	}
	served, atLimit := block("198.51.100.1")
	pastID, pastLimit := block("198.51.100.2")
	negID, negative := block("198.51.100.3")
	batchID, batch := block("198.51.100.4")
	farID, far := block("198.51.100.5")
	notMember := leader.c.TransportRefusals().Count(string(RPCProtocol), RefusedNotMember)

	cases := []struct {
		name   string
		from   host.Host
		req    rpcRequest
		want   error // nil: served
		policy string
		exists bool // whether policy is committed after the call
	}{
		{"propose at the hop limit", member.h, rpcRequest{Kind: rpcPropose, Hops: maxHops, Command: atLimit}, nil, served, true},
		{"propose past the hop limit", member.h, rpcRequest{Kind: rpcPropose, Hops: maxHops + 1, Command: pastLimit}, ErrTooManyHops, pastID, false},
		{"propose with negative hops", member.h, rpcRequest{Kind: rpcPropose, Hops: -1, Command: negative}, ErrTooManyHops, negID, false},
		{"outsider's propose_batch", outsider, rpcRequest{Kind: rpcProposeBatch, Hops: 1, Commands: [][]byte{batch}}, ErrNotMember, batchID, false},
		{"propose_batch past the hop limit", member.h, rpcRequest{Kind: rpcProposeBatch, Hops: maxHops + 1, Commands: [][]byte{far}}, ErrTooManyHops, farID, false},
		{"outsider's join with negative hops", outsider, join(outsider, outsider.ID().String(), -1), ErrTooManyHops, "", false},
		{"outsider's forwarded join", outsider, join(outsider, outsider.ID().String(), 1), ErrNotMember, "", false},
		{"outsider's join for another node", outsider, join(outsider, other.ID().String(), 0), ErrInvalidCommand, "", false},
		{"member's first-hand join for another node", member.h, join(member.h, other.ID().String(), 0), ErrInvalidCommand, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := callPeer(ctx, tc.from, leader.h.ID(), &tc.req)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.policy != "" && hasPolicy(leader.c, tc.policy) != tc.exists {
				t.Errorf("policy committed = %v, want %v", !tc.exists, tc.exists)
			}
		})
	}
	// The outsider's batch and forwarded join were counted as not_member.
	if got := leader.c.TransportRefusals().Count(string(RPCProtocol), RefusedNotMember); got != notMember+2 {
		t.Errorf("not_member refusals %d, want %d", got, notMember+2)
	}
	for _, h := range []host.Host{outsider, other} {
		if leader.c.knownPeer(h.ID().String()) {
			t.Errorf("%s was admitted through a refused join", shortID(h.ID().String()))
		}
	}

	// The control: the outsider's own first-hand join is served.
	own := join(outsider, outsider.ID().String(), 0)
	if _, err := callPeer(ctx, outsider, leader.h.ID(), &own); err != nil {
		t.Fatalf("outsider's own join refused: %v", err)
	}
	if !leader.c.knownPeer(outsider.ID().String()) {
		t.Fatal("outsider's own join did not admit it")
	}
}

// joinRequest is node's join request, proven with secret for mesh.
func joinRequest(tb testing.TB, secret, mesh, node string, hops int) rpcRequest {
	tb.Helper()
	key, err := intel.JoinTokenKey(secret)
	if err != nil {
		tb.Fatal(err)
	}
	return rpcRequest{Kind: rpcJoin, Hops: hops, Node: node, TokenKey: key.Public().(ed25519.PublicKey), Proof: intel.SignJoin(key, mesh, node)}
}
