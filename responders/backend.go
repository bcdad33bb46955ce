package responders

import (
	"context"
	"log/slog"
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
// block and logs every change. It is safe for concurrent use. It holds
// the keys alone, single addresses by their 16 bytes in a slab found
// through a table of indices: about 26 bytes an address, without a
// pointer (BenchmarkDesiredMemory).
type DryRun struct {
	log *slog.Logger

	mu      sync.Mutex
	addrs   slab[addrSlot]      // single addresses (addrKeyOf)
	free    []int32             // free slots of addrs
	addrIdx *refTable           // the live slots of addrs
	others  map[string]struct{} // every other key (Indicator.Key)
	digest  Digest              // of the keys
}

type addrSlot struct {
	a    addrKey
	live bool
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
	d := &DryRun{log: logger, others: make(map[string]struct{})}
	d.addrIdx = newRefTable(func(i int32) uint64 { return hashAddr(d.addrs.at(i).a) })
	return d
}

// findAddr returns the slot of a, if held. d.mu is held.
func (d *DryRun) findAddr(a addrKey) (int32, bool) {
	return d.addrIdx.find(hashAddr(a), func(i int32) bool { return d.addrs.at(i).a == a })
}

// liveAddrs yields every address held. d.mu is held.
func (d *DryRun) liveAddrs(yield func(addrKey) bool) {
	for i := range int32(d.addrs.len()) {
		if sl := d.addrs.at(i); sl.live && !yield(sl.a) {
			return
		}
	}
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

// Current implements Backend. It copies every entry: the reconciler
// compares through Compare instead.
func (d *DryRun) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]intel.Indicator, d.addrIdx.Len()+len(d.others))
	for a := range d.liveAddrs {
		out[a.key()] = a.indicator()
	}
	for k := range d.others {
		out[k] = parseKey(k)
	}
	return out, nil
}

// holds reports whether ind is held. d.mu is held.
func (d *DryRun) holds(ind intel.Indicator) bool {
	if a, ok := addrKeyOf(ind); ok {
		_, ok := d.findAddr(a)
		return ok
	}
	_, ok := d.others[ind.Key()]
	return ok
}

// Apply implements Backend.
func (d *DryRun) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ind := range remove {
		if a, ok := addrKeyOf(ind); ok {
			i, ok := d.findAddr(a)
			if !ok {
				continue
			}
			d.addrIdx.delete(i)
			*d.addrs.at(i) = addrSlot{}
			d.free = append(d.free, i)
			d.digest.RemoveHash(a.hash())
		} else {
			k := ind.Key()
			if _, ok := d.others[k]; !ok {
				continue
			}
			delete(d.others, k)
			d.digest.Remove(k)
		}
		d.log.Info("would unblock", "indicator", ind.Key())
	}
	for _, p := range add {
		if a, ok := addrKeyOf(p.Indicator); ok {
			if _, ok := d.findAddr(a); !ok {
				var i int32
				if n := len(d.free); n > 0 {
					i = d.free[n-1]
					d.free = d.free[:n-1]
					*d.addrs.at(i) = addrSlot{a: a, live: true}
				} else {
					i = d.addrs.push(addrSlot{a: a, live: true})
				}
				d.addrIdx.insert(i)
				d.digest.AddHash(a.hash())
			}
		} else if k := p.Indicator.Key(); !d.hasOther(k) {
			d.others[k] = struct{}{}
			d.digest.Add(k)
		}
		d.log.Info("would block", "indicator", p.Indicator.Key(), "policy", p.ID,
			"author", p.Author, "expires", p.ExpiresAt, "reason", p.Reason)
	}
	return nil
}

func (d *DryRun) hasOther(k string) bool {
	_, ok := d.others[k]
	return ok
}

// Compare implements Comparer: from the digest of what it holds unless
// the comparison must be thorough, and otherwise entry by entry, the
// policies rebuilt for the additions alone.
func (d *DryRun) Compare(_ context.Context, desired DesiredSet) (add []intel.Policy, remove []intel.Indicator, refresh []intel.Policy, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !desired.Thorough() && d.digest == desired.Digest(nil) {
		return nil, nil, nil, nil
	}
	s := desired.s
	var heldAddrs, heldOthers int // desired keys held, each once
	for k := range desired.keys() {
		kr := s.keys.at(k)
		var held bool
		if kr.wide == none {
			_, held = d.findAddr(kr.addr)
			if held {
				heldAddrs++
			}
		} else {
			held = d.hasOther(s.wideKeys[kr.wide])
			if held {
				heldOthers++
			}
		}
		if !held {
			add = append(add, s.policy(kr.desired))
		}
	}
	// The desired keys found held are distinct keys held: when they are
	// as many as the keys held, nothing held is undesired, and the keys
	// held need no look-up in the desired state (half the cost of a
	// thorough comparison, a compliance check's, which at a million
	// blocks took 0.8 s of CPU every 30 s).
	if heldAddrs != d.addrIdx.Len() {
		for a := range d.liveAddrs {
			if !desired.hasAddr(a) {
				remove = append(remove, a.indicator())
			}
		}
	}
	if heldOthers != len(d.others) {
		for k := range d.others {
			if !desired.Has(k) {
				remove = append(remove, parseKey(k))
			}
		}
	}
	return add, remove, nil, nil
}

// Blocked returns what the backend would block now, sorted by key.
func (d *DryRun) Blocked() []intel.Indicator {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, 0, d.addrIdx.Len()+len(d.others))
	for a := range d.liveAddrs {
		keys = append(keys, a.key())
	}
	for k := range d.others {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]intel.Indicator, len(keys))
	for i, k := range keys {
		out[i] = parseKey(k)
	}
	return out
}

// Has reports whether the backend would block ind now.
func (d *DryRun) Has(ind intel.Indicator) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.holds(ind)
}

// Refresher is an optional interface for backends whose entries carry an
// expiry of their own (kernel element timeouts): on every pass the
// reconciler hands it the desired policies of the entries it already
// holds, so that an extended policy does not lapse at its old expiry. It
// returns how many entries it updated.
type Refresher interface {
	Refresh(ctx context.Context, held []intel.Policy) (int, error)
}
