package responders_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// A long random run of changes (mesh-wide blocks and allows committed,
// revoked and expiring, local decisions, protected ranges, a lost feed)
// leaves the backend holding exactly what Desired computes from scratch,
// minus what the safety floors refuse, after every change pass and every
// full pass.
func TestChangesMatchDesiredFromScratch(t *testing.T) { changesMatchDesired(t, false, false) }

// The same with a quarter of the policies in forms the reconciler holds
// whole rather than compactly (times in another location, IDs of another
// form), mixed with the usual ones.
func TestChangesMatchDesiredFromScratchOddForms(t *testing.T) { changesMatchDesired(t, true, false) }

// The same with a backend that cannot compare: full passes read what it
// holds (Current).
func TestChangesMatchDesiredFromScratchCurrent(t *testing.T) { changesMatchDesired(t, true, true) }

// plainBackend hides every optional interface of its backend.
type plainBackend struct{ b responders.Backend }

func (p plainBackend) Name() string { return p.b.Name() }
func (p plainBackend) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	return p.b.Current(ctx)
}
func (p plainBackend) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	return p.b.Apply(ctx, add, remove)
}

func changesMatchDesired(t *testing.T, odd, plain bool) {
	rng := rand.New(rand.NewPCG(12, 34))
	zone := time.FixedZone("UTC+1", 3600)
	var universe []intel.Indicator
	for i := range 24 {
		universe = append(universe, intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{198, 51, 100, byte(i * 5)})))
	}
	for _, s := range []string{"198.51.100.0/28", "198.51.100.64/26", "198.51.0.0/16", "2001:db8::1", "2001:db8::/64",
		"example", "a.example", "b.a.example", "127.0.0.1", "203.0.113.9"} {
		universe = append(universe, mustInd(t, s))
	}
	protections := [][]netip.Prefix{nil, {netip.MustParsePrefix("198.51.100.0/30")}, {netip.MustParsePrefix("198.51.100.64/28"), netip.MustParsePrefix("2001:db8::/126")}}
	ttls := []time.Duration{0, time.Minute, 5 * time.Minute, time.Hour}

	clk := &clock{t: t0}
	src := newFeed()
	b := newRecorder()
	var backend responders.Backend = b
	if plain {
		backend = plainBackend{b}
	}
	r := responders.NewReconciler(src, []responders.Backend{backend}, responders.Options{Now: clk.Now})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context()))

	policy := func(action intel.Action) intel.Policy {
		ind := universe[rng.IntN(len(universe))]
		p := intel.NewPolicy(action, ind, "prop", "operator:prop", clk.Now(), ttls[rng.IntN(len(ttls))])
		if odd {
			switch rng.IntN(8) {
			case 0:
				p.CreatedAt, p.ExpiresAt = p.CreatedAt.In(zone), p.ExpiresAt.In(zone)
			case 1:
				p.ID = "odd-" + p.ID
			}
		}
		return p
	}
	for step := range 600 {
		what := ""
		switch k := rng.IntN(20); {
		case k < 7:
			p := policy(intel.ActionBlock)
			src.commit(p)
			what = "commit block " + p.Indicator.Key()
		case k < 9:
			p := policy(intel.ActionAllow)
			src.commit(p)
			what = "commit allow " + p.Indicator.Key()
		case k < 12:
			src.mu.Lock()
			ids := make([]string, 0, len(src.policies))
			for id := range src.policies {
				ids = append(ids, id)
			}
			src.mu.Unlock()
			if len(ids) > 0 {
				slices.Sort(ids)
				src.mu.Lock()
				p := src.policies[ids[rng.IntN(len(ids))]]
				src.mu.Unlock()
				src.revoke(p)
				what = "revoke " + p.Indicator.Key()
			}
		case k < 14:
			var local []intel.Policy
			for range rng.IntN(4) {
				p := policy(intel.Action([]intel.Action{intel.ActionBlock, intel.ActionBlock, intel.ActionAllow}[rng.IntN(3)]))
				p.Author = "local:prop"
				local = append(local, p)
			}
			src.mu.Lock()
			src.local = local
			src.mu.Unlock()
			what = fmt.Sprintf("%d local decisions", len(local))
		case k < 15:
			src.setProtected(protections[rng.IntN(len(protections))]...)
			what = "protected ranges"
		case k < 16:
			src.lose(func(m map[string]intel.Policy) {
				for id := range m {
					if rng.IntN(3) == 0 {
						delete(m, id)
					}
				}
			})
			what = "feed lost"
		default:
			clk.Advance(time.Duration(rng.IntN(120)) * time.Second)
			what = "time passes"
		}
		if step%9 == 0 {
			mustPass(t, r.ReconcileOnce(t.Context()))
		} else {
			mustPass(t, r.DeltaPass(t.Context()))
		}
		now := clk.Now()
		src.mu.Lock()
		var mesh []intel.Policy
		for _, p := range src.policies {
			mesh = append(mesh, p)
		}
		local := slices.Clone(src.local)
		protected := slices.Clone(src.protected)
		src.mu.Unlock()
		var want []string
		for k, p := range responders.Desired(now, mesh, local, protected) {
			if intel.DefaultFloors().CheckBlock(p.Indicator, true) == nil {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		var got []string
		for _, ind := range b.Blocked() {
			got = append(got, ind.Key())
		}
		if !slices.Equal(got, want) {
			t.Fatalf("step %d (%s): the backend holds\n%v\nDesired from scratch is\n%v", step, what, got, want)
		}
	}
}
