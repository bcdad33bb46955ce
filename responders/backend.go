package responders

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/meshward/meshward/intel"
)

// Backend enforces blocks somewhere: a firewall set, a DNS sinkhole, a
// webhook. The reconciler is its only caller and never calls it
// concurrently.
type Backend interface {
	// Name identifies the backend in logs, metrics and the timeline.
	Name() string
	// Current returns the entries the backend holds now, keyed by
	// Indicator.Key(): only entries it created, never foreign ones.
	Current(ctx context.Context) (map[string]intel.Indicator, error)
	// Apply adds and removes entries. Adding an entry that is present and
	// removing one that is absent are not errors. On error, part of the
	// change may have been applied; the next pass corrects it.
	Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error
}

// TypeFilter is implemented by a backend that enforces only some indicator
// types (a firewall has no use for domains). The reconciler hands such a
// backend only the types it supports. A backend without it gets all.
type TypeFilter interface {
	Supports(t intel.IndicatorType) bool
}

// DryRun is the backend that blocks nothing: it records what it would
// block and logs every change. It is safe for concurrent use.
type DryRun struct {
	log *slog.Logger

	mu      sync.Mutex
	blocked map[string]intel.Policy
	digest  Digest // of blocked's keys
}

var (
	_ Backend  = (*DryRun)(nil)
	_ Comparer = (*DryRun)(nil)
)

// NewDryRun returns an empty dry-run backend. A nil logger discards.
func NewDryRun(logger *slog.Logger) *DryRun {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &DryRun{log: logger, blocked: make(map[string]intel.Policy)}
}

// DryRunName is the dry-run backend's name, and its name in the registry.
const DryRunName = "dry-run"

func init() {
	Register(DryRunName, func(_ Config, deps Deps) ([]Backend, error) {
		return []Backend{NewDryRun(deps.Logger.With("part", DryRunName))}, nil
	})
}

// Name implements Backend.
func (d *DryRun) Name() string { return DryRunName }

// Current implements Backend.
func (d *DryRun) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]intel.Indicator, len(d.blocked))
	for k, p := range d.blocked {
		out[k] = p.Indicator
	}
	return out, nil
}

// Apply implements Backend.
func (d *DryRun) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ind := range remove {
		k := ind.Key()
		if _, ok := d.blocked[k]; ok {
			delete(d.blocked, k)
			d.digest.Remove(k)
			d.log.Info("would unblock", "indicator", ind.Key())
		}
	}
	for _, p := range add {
		k := p.Indicator.Key()
		if _, ok := d.blocked[k]; !ok {
			d.digest.Add(k)
		}
		d.blocked[k] = p
		d.log.Info("would block", "indicator", p.Indicator.Key(), "policy", p.ID,
			"author", p.Author, "expires", p.ExpiresAt, "reason", p.Reason)
	}
	return nil
}

// Compare implements Comparer: from the digest of what it holds unless
// the comparison must be thorough, and otherwise entry by entry.
func (d *DryRun) Compare(_ context.Context, desired DesiredSet) (add []intel.Policy, remove []intel.Indicator, refresh []intel.Policy, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !desired.Thorough() && d.digest == desired.Digest(nil) {
		return nil, nil, nil, nil
	}
	for k, p := range desired.All() {
		if _, ok := d.blocked[k]; !ok {
			add = append(add, *p)
		}
	}
	for k, p := range d.blocked {
		if !desired.Has(k) {
			remove = append(remove, p.Indicator)
		}
	}
	return add, remove, nil, nil
}

// Blocked returns what the backend would block now, sorted by key.
func (d *DryRun) Blocked() []intel.Indicator {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]intel.Indicator, 0, len(d.blocked))
	for _, k := range slices.Sorted(maps.Keys(d.blocked)) {
		out = append(out, d.blocked[k].Indicator)
	}
	return out
}

// Has reports whether the backend would block ind now.
func (d *DryRun) Has(ind intel.Indicator) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.blocked[ind.Key()]
	return ok
}

// Refresher is an optional interface for backends whose entries carry an
// expiry of their own (kernel element timeouts): on every pass the
// reconciler hands it the desired policies of the entries it already
// holds, so that an extended policy does not lapse at its old expiry. It
// returns how many entries it updated.
type Refresher interface {
	Refresh(ctx context.Context, held []intel.Policy) (int, error)
}
