package responders

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// refreshing is a backend whose entries have an expiry of their own.
type refreshing struct {
	*DryRun
	mu      sync.Mutex
	expires map[string]time.Time
	calls   int
}

func (b *refreshing) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	b.mu.Lock()
	for _, p := range add {
		b.expires[p.Indicator.Key()] = p.ExpiresAt
	}
	b.mu.Unlock()
	return b.DryRun.Apply(ctx, add, remove)
}

func (b *refreshing) Refresh(_ context.Context, held []intel.Policy) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	n := 0
	for _, p := range held {
		if p.ExpiresAt.After(b.expires[p.Indicator.Key()]) {
			b.expires[p.Indicator.Key()] = p.ExpiresAt
			n++
		}
	}
	return n, nil
}

type staticSource struct {
	mu   sync.Mutex
	mesh []intel.Policy
}

func (s *staticSource) MeshPolicies(time.Time) []intel.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]intel.Policy(nil), s.mesh...)
}
func (s *staticSource) LocalDecisions(time.Time) []intel.Policy { return nil }
func (s *staticSource) Protected() []netip.Prefix               { return nil }

// An extended policy reaches a backend that already holds the entry.
func TestReconcilerRefreshesExtendedPolicies(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.8"))
	p := intel.NewPolicy(intel.ActionBlock, ind, "", "n", now, time.Minute)
	src := &staticSource{mesh: []intel.Policy{p}}
	b := &refreshing{DryRun: NewDryRun(slog.New(slog.DiscardHandler)), expires: map[string]time.Time{}}
	r := NewReconciler(src, []Backend{b}, Options{Now: func() time.Time { return now }})
	defer r.Close()
	ctx := context.Background()
	if err := r.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.expires[ind.Key()]; !got.Equal(p.ExpiresAt) {
		t.Fatalf("after add: expiry %v, want %v", got, p.ExpiresAt)
	}
	longer := p
	longer.ExpiresAt = now.Add(time.Hour)
	src.mu.Lock()
	src.mesh = []intel.Policy{longer}
	src.mu.Unlock()
	if err := r.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.expires[ind.Key()]; !got.Equal(longer.ExpiresAt) {
		t.Fatalf("after extension: expiry %v, want %v", got, longer.ExpiresAt)
	}
	if st := r.BackendStats()[b.Name()]; st.Refreshed != 1 || st.Added != 1 {
		t.Fatalf("stats %+v, want 1 added and 1 refreshed", st)
	}
}
