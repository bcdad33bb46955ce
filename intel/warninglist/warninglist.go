// Package warninglist holds the values that no feed may ever turn into a
// mesh-wide block: public resolvers, cloud metadata addresses, large CDN
// ranges, reserved names (RFC 2606, 6761, 6762, 7686) and the most
// visited registrable domains. A feed that lists one of them is wrong (or
// hostile): blocking it would cut every site off from something it
// needs. The built-in list is compiled into the binary; operators extend
// it through the mesh (operator-signed warninglist_add, held in the FSM).
//
// A match names the entry that vetoed the value. Matching is by overlap:
// an address or range matches an entry range it overlaps (either way), a
// domain matches an entry that is the domain itself, one of its parents,
// or one of its subdomains (a block of a parent would cover the entry).
//
// Pure code: no I/O, no goroutines. A List is immutable once built.
package warninglist

import (
	"cmp"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/meshward/meshward/intel"
)

// Entry is one warninglisted value: an address, a range (CIDR) or a
// domain, the list it belongs to and why.
type Entry struct {
	Indicator intel.Indicator `json:"indicator"`
	List      string          `json:"list"`
	Reason    string          `json:"reason,omitempty"`
}

func (e Entry) String() string { return e.Indicator.Value + " (" + e.List + ")" }

// OperatorList is the List name of the entries operators add.
const OperatorList = "operator"

// List is a set of entries indexed for matching: ranges sorted by first
// address with a map per prefix length for the ranges that contain a
// value, and domains with every parent of theirs.
type List struct {
	entries []Entry // sorted by indicator key
	nets    []netEntry
	byPfx   map[netip.Prefix]int // prefix -> index in entries
	lengths []int                // distinct prefix lengths (both families), ascending
	domains map[string]int       // domain -> index in entries
	parents map[string]int       // a proper parent of an entry domain -> the entry (smallest key)
}

type netEntry struct {
	p netip.Prefix
	i int
}

// New builds a list of entries. An entry must be a canonical address,
// CIDR or domain indicator; a repeated one is kept once (the first).
func New(entries []Entry) (*List, error) {
	l := &List{byPfx: map[netip.Prefix]int{}, domains: map[string]int{}, parents: map[string]int{}}
	seen := map[string]bool{}
	for i, e := range entries {
		if err := e.Indicator.Validate(); err != nil {
			return nil, fmt.Errorf("warninglist entry %d: %w", i, err)
		}
		if !slices.Contains(intel.FeedPolicyTypes, e.Indicator.Type) {
			return nil, fmt.Errorf("warninglist entry %d: type %s: want one of %v", i, e.Indicator.Type, intel.FeedPolicyTypes)
		}
		if seen[e.Indicator.Key()] {
			continue
		}
		seen[e.Indicator.Key()] = true
		l.entries = append(l.entries, e)
	}
	slices.SortFunc(l.entries, func(a, b Entry) int { return cmp.Compare(a.Indicator.Key(), b.Indicator.Key()) })
	lengths := map[int]bool{}
	for i, e := range l.entries {
		if p, ok := e.Indicator.Prefix(); ok {
			l.nets = append(l.nets, netEntry{p, i})
			l.byPfx[p] = i
			lengths[p.Bits()] = true
			continue
		}
		d := e.Indicator.Value
		l.domains[d] = i
		for rest := d; ; {
			dot := strings.IndexByte(rest, '.')
			if dot < 0 {
				break
			}
			rest = rest[dot+1:]
			if _, ok := l.parents[rest]; !ok {
				l.parents[rest] = i // entries are in key order: the first is the smallest
			}
		}
	}
	slices.SortFunc(l.nets, func(a, b netEntry) int {
		return cmp.Or(a.p.Addr().Compare(b.p.Addr()), cmp.Compare(a.p.Bits(), b.p.Bits()))
	})
	for b := range lengths {
		l.lengths = append(l.lengths, b)
	}
	slices.Sort(l.lengths)
	return l, nil
}

// Len is the number of entries.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.entries)
}

// Entries returns the entries, sorted by indicator key.
func (l *List) Entries() []Entry {
	if l == nil {
		return nil
	}
	return slices.Clone(l.entries)
}

// Match returns the entry that vetoes ind, if any. For several, it names
// the same one every time: the entry containing an address or range
// with the shortest prefix, else the first contained range in address
// order; for a domain, the domain itself, else its nearest listed parent,
// else the listed subdomain with the smallest key. A URL is matched by
// its host; a hash never matches.
func (l *List) Match(ind intel.Indicator) (Entry, bool) {
	if l == nil || len(l.entries) == 0 {
		return Entry{}, false
	}
	if ind.Type == intel.URL {
		u, err := url.Parse(ind.Value)
		if err != nil || u.Hostname() == "" {
			return Entry{}, false
		}
		host, err := intel.ParseIndicator(u.Hostname())
		if err != nil {
			return Entry{}, false
		}
		ind = host
	}
	if q, ok := ind.Prefix(); ok {
		return l.matchPrefix(q)
	}
	if ind.Type == intel.Domain {
		return l.matchDomain(ind.Value)
	}
	return Entry{}, false
}

func (l *List) matchPrefix(q netip.Prefix) (Entry, bool) {
	// An entry that contains q: one map look-up per prefix length.
	for _, b := range l.lengths {
		if b > q.Bits() {
			break
		}
		if b > q.Addr().BitLen() {
			continue
		}
		p, err := q.Addr().Prefix(b)
		if err != nil {
			continue
		}
		if i, ok := l.byPfx[p]; ok {
			return l.entries[i], true
		}
	}
	// An entry inside q: the first range starting at or after q's first
	// address, if q contains it.
	start := q.Masked().Addr()
	k, _ := slices.BinarySearchFunc(l.nets, start, func(e netEntry, a netip.Addr) int { return e.p.Addr().Compare(a) })
	if k < len(l.nets) && q.Contains(l.nets[k].p.Addr()) {
		return l.entries[l.nets[k].i], true
	}
	return Entry{}, false
}

func (l *List) matchDomain(d string) (Entry, bool) {
	for rest := d; ; {
		if i, ok := l.domains[rest]; ok {
			return l.entries[i], true
		}
		dot := strings.IndexByte(rest, '.')
		if dot < 0 {
			break
		}
		rest = rest[dot+1:]
	}
	if i, ok := l.parents[d]; ok {
		return l.entries[i], true
	}
	return Entry{}, false
}

// Check matches ind against lists in order and returns the first match.
func Check(ind intel.Indicator, lists ...*List) (Entry, bool) {
	for _, l := range lists {
		if e, ok := l.Match(ind); ok {
			return e, true
		}
	}
	return Entry{}, false
}

var (
	builtinOnce sync.Once
	builtin     *List
)

// Builtin is the list compiled into the binary (builtin.go), built once.
func Builtin() *List {
	builtinOnce.Do(func() {
		var es []Entry
		for _, g := range builtinGroups {
			for _, v := range g.values {
				ind, err := intel.ParseIndicator(v)
				if err != nil {
					panic(fmt.Sprintf("warninglist: built-in %q: %v", v, err))
				}
				es = append(es, Entry{Indicator: ind, List: g.list, Reason: g.reason})
			}
		}
		l, err := New(es)
		if err != nil {
			panic(fmt.Sprintf("warninglist: built-in list: %v", err))
		}
		builtin = l
	})
	return builtin
}
