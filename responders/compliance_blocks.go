package responders

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshward/meshward/intel"
)

// BlockCheck returns the compliance check of the blocks the reconciler
// enforces: every backend that can compare (Comparer) or list (Current)
// what it holds is compared, thoroughly, with the desired state as of
// the last pass; its repair is a full pass that compares every backend
// thoroughly. Before the first full pass there is nothing to compare
// with, and the check reports no drift.
func (r *Reconciler) BlockCheck() ComplianceCheck { return blockCheck{r} }

type blockCheck struct{ r *Reconciler }

func (blockCheck) Name() string { return "blocks" }

// blockSlack: a block whose policy expires this soon may have left the
// kernel (element timeouts) before the desired state drops it.
const blockSlack = 2 * time.Second

func (b blockCheck) Drift(ctx context.Context) ([]string, error) {
	r := b.r
	r.passMu.Lock()
	defer r.passMu.Unlock()
	if r.fullPasses.Load() == 0 {
		return nil, nil
	}
	now := r.opts.Now()
	desired := DesiredSet{s: r.state, thorough: true}
	var reasons []string
	var errs []error
	for i, be := range r.backends {
		var missing, extra int
		filter, _ := be.(TypeFilter)
		supported := func(t intel.IndicatorType) bool { return filter == nil || filter.Supports(t) }
		if cmpr, ok := be.(Comparer); ok {
			add, remove, _, err := cmpr.Compare(ctx, desired)
			if err != nil {
				errs = append(errs, fmt.Errorf("backend %s: %w", be.Name(), err))
				continue
			}
			for _, p := range add {
				if supported(p.Indicator.Type) && (p.ExpiresAt.IsZero() || p.ExpiresAt.After(now.Add(blockSlack))) {
					missing++
				}
			}
			for _, ind := range remove {
				if supported(ind.Type) {
					extra++
				}
			}
		} else {
			cur, err := be.Current(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("backend %s: %w", be.Name(), err))
				continue
			}
			for _, p := range desired.All() {
				if _, held := cur[p.Indicator.Key()]; !held && supported(p.Indicator.Type) &&
					(p.ExpiresAt.IsZero() || p.ExpiresAt.After(now.Add(blockSlack))) {
					missing++
				}
			}
			for k := range cur {
				if !desired.Has(k) {
					extra++
				}
			}
		}
		if missing > 0 {
			reasons = append(reasons, fmt.Sprintf("%d blocks missing from %s", missing, be.Name()))
		}
		if extra > 0 {
			reasons = append(reasons, fmt.Sprintf("%d blocks in %s that no policy asks for", extra, be.Name()))
		}
		if missing+extra > 0 {
			r.stale[i] = true // the next pass compares it thoroughly
		}
	}
	return reasons, errors.Join(errs...)
}

func (b blockCheck) Repair(ctx context.Context) error {
	r := b.r
	r.passMu.Lock()
	for i := range r.stale {
		r.stale[i] = true
	}
	r.passMu.Unlock()
	return r.ReconcileOnce(ctx)
}
