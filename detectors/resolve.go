package detectors

// Resolution of the host names that sources are logged by (off by
// default).

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/meshward/meshward/intel"
)

// ResolveOptions turn on the resolution of host names: when a rule
// reports a source logged by host name (a domain indicator), the engine
// also reports each address the name resolves to, with the same
// detector and half the confidence, except addresses in
// EngineOptions.Allow. Lookups run after the line's other sightings, on
// the caller's goroutine, outside the engine's lock; answers and
// failures are cached.
//
// A reverse-resolved name is chosen by whoever controls the reverse zone
// of the attacker's address, so it may name someone else's host: that is
// why resolution is off by default and its sightings carry half the
// confidence.
type ResolveOptions struct {
	// Timeout bounds one lookup (default 2 s).
	Timeout time.Duration
	// CacheSize bounds the names whose answers are kept (default 4096);
	// past it the oldest is dropped.
	CacheSize int
	// TTL is how long an answer is kept (default 10 min); a failure is
	// kept a tenth of it.
	TTL time.Duration
	// MaxAddrs bounds the addresses reported per name (default 8).
	MaxAddrs int
	// MaxLookups bounds the lookups per minute (default 60), so that a
	// log naming many hosts cannot stall the engine on DNS; names past it
	// are not resolved, and counted.
	MaxLookups int
	// Lookup resolves a name (default net.DefaultResolver.LookupNetIP
	// for "ip"). Tests replace it.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// Now is the clock of the cache and the rate limit (default
	// time.Now).
	Now func() time.Time
}

// resolver is a ResolveOptions at work: a bounded cache and a rate limit.
type resolver struct {
	o ResolveOptions

	mu       sync.Mutex
	cache    map[string]resolved
	order    []string // names in insertion order, for eviction
	minute   int64    // the current rate-limit minute (unix)
	lookups  int      // lookups in that minute
	resolved uint64   // address sightings added
	failed   uint64   // lookups that failed or timed out
	limited  uint64   // names not resolved because of MaxLookups
}

type resolved struct {
	addrs []netip.Addr
	until time.Time
}

func newResolver(o ResolveOptions) (*resolver, error) {
	switch {
	case o.Timeout < 0, o.CacheSize < 0, o.TTL < 0, o.MaxAddrs < 0, o.MaxLookups < 0:
		return nil, fmt.Errorf("engine options: resolve: negative limit in %+v", o)
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.CacheSize == 0 {
		o.CacheSize = 4096
	}
	if o.TTL == 0 {
		o.TTL = 10 * time.Minute
	}
	if o.MaxAddrs == 0 {
		o.MaxAddrs = 8
	}
	if o.MaxLookups == 0 {
		o.MaxLookups = 60
	}
	if o.Lookup == nil {
		o.Lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &resolver{o: o, cache: make(map[string]resolved)}, nil
}

// addrs returns the addresses of host, from the cache or a lookup.
func (r *resolver) addrs(host string) []netip.Addr {
	now := r.o.Now()
	r.mu.Lock()
	if c, ok := r.cache[host]; ok && now.Before(c.until) {
		r.mu.Unlock()
		return c.addrs
	}
	if m := now.Unix() / 60; m != r.minute {
		r.minute, r.lookups = m, 0
	}
	if r.lookups >= r.o.MaxLookups {
		r.limited++
		r.mu.Unlock()
		return nil
	}
	r.lookups++
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), r.o.Timeout)
	got, err := r.o.Lookup(ctx, host)
	cancel()
	var addrs []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, a := range got {
		a = a.Unmap().WithZone("")
		if a.IsValid() && !seen[a] && len(addrs) < r.o.MaxAddrs {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	ttl := r.o.TTL
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failed++
		ttl /= 10
	}
	if _, ok := r.cache[host]; !ok {
		if len(r.order) >= r.o.CacheSize {
			delete(r.cache, r.order[0])
			r.order = r.order[1:]
		}
		r.order = append(r.order, host)
	}
	r.cache[host] = resolved{addrs: addrs, until: now.Add(ttl)}
	return addrs
}

// expand emits a sighting for each address of the domain sighting s that
// allowed does not refuse.
func (r *resolver) expand(s intel.Sighting, allowed func(netip.Addr) bool, emit func(intel.Sighting)) {
	for _, a := range r.addrs(s.Indicator.Value) {
		if allowed(a) {
			continue
		}
		d := s
		d.Indicator = intel.IndicatorFromAddr(a)
		d.Confidence = s.Confidence / 2
		r.mu.Lock()
		r.resolved++
		r.mu.Unlock()
		emit(d)
	}
}

func (r *resolver) stats(st *EngineStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st.Resolved, st.ResolveFailed, st.ResolveLimited = r.resolved, r.failed, r.limited
}
