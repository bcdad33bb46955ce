package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

// The admin API's writes go through the node's real consensus: an
// operator's block commits and is listed, its revocation commits, and
// revoking what does not exist is answered as not found.
func TestAdminBlockListRevokeOnRealMesh(t *testing.T) {
	n := startSingle(t, nil)
	waitFor(t, "the node to lead", func() bool { return n.Consensus().IsLeader() })
	api := newAdminAPI(n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	waitFor(t, "the mesh ID", func() bool { return api.MeshID() != "" })
	if ops := api.Operators(); len(ops) != 1 || ops[0].Role != intel.OperatorAdmin || ops[0].AddedBy != "bootstrap" {
		t.Fatalf("operators %+v: want the bootstrap admin", ops)
	}
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.77"))
	p := intel.NewPolicy(intel.ActionBlock, ind, "admin test", "operator:test", time.Now(), time.Hour)
	// Unsigned, the mesh-wide change is refused and says what to do.
	if err := api.ProposePolicy(ctx, p); !errors.Is(err, admin.ErrRefused) || !strings.Contains(err.Error(), "meshward operator keygen") {
		t.Fatalf("unsigned block: %v, want admin.ErrRefused naming meshward operator keygen", err)
	}
	if err := api.SubmitOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: 3600, Reason: "admin test"})); err != nil {
		t.Fatal(err)
	}
	listed := func() bool {
		_, ok := api.MeshPolicy(p.ID, time.Now())
		page, _ := api.MeshPolicyPage("", 0, time.Now())
		if inPage := len(page) == 1 && page[0].ID == p.ID; inPage != ok {
			t.Fatalf("policy %s: looked up %t, paged %+v", p.ID, ok, page)
		}
		return ok
	}
	if !listed() {
		t.Fatalf("committed block not listed")
	}
	waitFor(t, "the block to be enforced", func() bool { return n.Enforcing(ind) })
	st, err := api.Status(ctx)
	if err != nil || st.Mesh.Policies != 1 || !st.Mesh.IsLeader || !st.Health.OK {
		t.Fatalf("status %+v, %v: want one policy, leader, healthy", st, err)
	}

	if err := api.RevokePolicy(ctx, p.ID); !errors.Is(err, admin.ErrRefused) {
		t.Fatalf("unsigned revoke: %v, want admin.ErrRefused", err)
	}
	revoke := signOperator(t, n, intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: p.ID})
	if err := api.SubmitOperator(ctx, revoke); err != nil {
		t.Fatal(err)
	}
	if listed() {
		t.Fatal("revoked block still listed")
	}
	waitFor(t, "the block to be lifted", func() bool { return !n.Enforcing(ind) })
	if err := api.SubmitOperator(ctx, revoke); !errors.Is(err, admin.ErrForbidden) {
		t.Fatalf("the revocation replayed: %v, want admin.ErrForbidden", err)
	}

	// A block of a range protected through consensus is refused by the mesh.
	if err := api.SubmitOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "192.0.2.0/24"})); err != nil {
		t.Fatal(err)
	}
	prot := intel.IndicatorFromAddr(netip.MustParseAddr("192.0.2.5"))
	if err := api.SubmitOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpBlock, Indicator: &prot, TTLSeconds: 3600})); !errors.Is(err, admin.ErrRefused) {
		t.Fatalf("block of a protected address: %v, want admin.ErrRefused", err)
	}
	// Removing a member unsigned is refused.
	if err := api.RemoveMember(ctx, n.ID()); !errors.Is(err, admin.ErrRefused) {
		t.Fatalf("unsigned removal: %v, want admin.ErrRefused", err)
	}

	// Local decisions: put, enforced, deleted, lifted.
	local := intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(netip.MustParseAddr("198.51.100.77")), "x", "operator:test", time.Now(), time.Hour)
	if err := api.PutLocalDecision(ctx, local); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the local decision to be enforced", func() bool { return n.Enforcing(local.Indicator) })
	if err := api.DeleteLocalDecision(ctx, local.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the local decision to be lifted", func() bool { return !n.Enforcing(local.Indicator) })
}

// When the evaluation queue is full, a received sighting is still stored
// and its evaluation is dropped and counted, visible in the status. The
// node is wired but not started, so nothing drains the queue.
func TestEvaluationQueueFullIsCounted(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Consensus.Bootstrap = true
	cfg.Consensus.BootstrapOperators = testBootstrapOperators()
	cfg.Detectors.Paths = []string{filepath.Join(dir, "auth.log")}
	d, err := NewDeps(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(d)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	defer func() {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := &gossipHandler{n}
	now := time.Now()
	const extra = 3
	for i := range evalQueueSize + extra {
		addr := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		s := intel.Sighting{Indicator: intel.IndicatorFromAddr(addr), Detector: "test", Count: 1, FirstSeen: now, LastSeen: now}
		raw, err := intel.SealJSON(other, intel.KindSighting, uint64(i+1), now, s)
		if err != nil {
			t.Fatal(err)
		}
		env, err := intel.Open(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.HandleEnvelope(context.Background(), env, ""); err != nil {
			t.Fatalf("sighting %d: %v", i, err)
		}
	}
	st, err := newAdminAPI(n).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Node.Counters["evaluations_dropped"]; got != extra {
		t.Errorf("evaluations_dropped = %d, want %d", got, extra)
	}
	if got := st.Node.Counters["sightings_stored"]; got != evalQueueSize+extra {
		t.Errorf("sightings_stored = %d, want %d", got, evalQueueSize+extra)
	}
	recs, err := n.Store().Sightings(0)
	if err != nil || len(recs) != evalQueueSize+extra {
		t.Errorf("store holds %d sightings (%v), want %d", len(recs), err, evalQueueSize+extra)
	}
}
