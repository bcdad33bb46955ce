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

// Through the admin API of a real node: a bulk block of 2,000 addresses
// is one command; one refused by a protected address commits none of its
// addresses and names the address; the policies are listed page by page,
// each once, and counted in the status without being copied; the heap
// profile is served to the admin token.
func TestAdminBulkAndPagesOnRealMesh(t *testing.T) {
	n := startSingle(t, nil)
	waitFor(t, "the node to lead", func() bool { return n.Consensus().IsLeader() && n.Consensus().MeshID() != "" })
	c := localAdminClient(t, n.deps.Config.SocketPath())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	inds := make([]intel.Indicator, intel.MaxBulkIndicators)
	for i := range inds {
		inds[i] = intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
	}
	res, err := c.SubmitOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpBlockBulk, Indicators: inds, TTLSeconds: 3600, Reason: "bulk"}))
	if err != nil {
		t.Fatalf("bulk block of %d addresses: %v", len(inds), err)
	}
	if res.Count != len(inds) || res.Op != intel.OpBlockBulk {
		t.Fatalf("result %+v", res)
	}

	if _, err := c.SubmitOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "192.0.2.0/24"})); err != nil {
		t.Fatal(err)
	}
	free := intel.IndicatorFromAddr(netip.MustParseAddr("198.19.0.1"))
	prot := intel.IndicatorFromAddr(netip.MustParseAddr("192.0.2.9"))
	_, err = c.SubmitOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpBlockBulk, Indicators: []intel.Indicator{free, prot}, TTLSeconds: 3600}))
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "indicators[1] 192.0.2.9") {
		t.Fatalf("bulk block with a protected address: %v, want 409 naming indicators[1] 192.0.2.9", err)
	}
	if _, ok := n.Consensus().Policy(intel.PolicyID(intel.ActionBlock, free), time.Now()); ok {
		t.Fatal("a refused bulk command committed its first address")
	}

	seen := map[string]bool{}
	pages := 0
	q := admin.PolicyQuery{Scope: admin.ScopeMesh, Limit: 300}
	for {
		page, err := c.PolicyPage(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, p := range page.Items {
			if seen[p.ID] {
				t.Fatalf("policy %s listed twice", p.ID)
			}
			seen[p.ID] = true
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	if len(seen) != len(inds) || pages != 7 {
		t.Fatalf("walk listed %d policies in %d pages, want %d in 7", len(seen), pages, len(inds))
	}
	st, err := c.Status(ctx)
	if err != nil || st.Mesh.Policies != len(inds) {
		t.Fatalf("status counts %d policies (%v), want %d", st.Mesh.Policies, err, len(inds))
	}
	var heap strings.Builder
	if _, err := c.Profile(ctx, "heap", 0, &heap); err != nil || !strings.HasPrefix(heap.String(), "\x1f\x8b") {
		t.Fatalf("heap profile: %v (%d bytes)", err, heap.Len())
	}
}
