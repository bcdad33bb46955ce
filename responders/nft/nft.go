// Package nft is the nftables backend of the responders: it enforces
// address, IPv6 and CIDR blocks in a table of its own, through netlink.
//
// The table (default "inet meshward") holds four sets, "v4" and "v6" for
// single addresses and the interval sets "v4net" and "v6net" for networks,
// all with per-element timeouts set from the policy's expiry (elements of
// policies that never expire get none), and two base chains, "input" and
// "forward", each dropping and counting packets whose source address is in
// one of the sets.
//
// Nothing outside that table is ever read or written: Teardown deletes the
// table and only it.
//
// The backend is the only writer of its table, so it keeps a view of what
// the sets hold and answers Current from it. Reading a set of 100,000
// elements back from the kernel takes seconds (the kernel restarts its
// walk for every dump chunk), so the view is checked cheaply on every
// call: the kernel's ruleset generation, which every committed change to
// any table advances, must be the one recorded after the backend's own
// last change. If another process changed the ruleset (deleted the table,
// flushed a set, deleted an element by hand, or only touched another
// table), or a change of the backend's own failed, the next Current
// repairs the structure (table, sets, chains, rules) and reads the sets
// back in full, so the reconcile pass restores what is missing. Current
// also reads in full every WithFullReadEvery passes or interval, whichever
// comes first, which bounds any drift the generation check could miss.
//
// Elements expire in the kernel by themselves; the view drops them at the
// same time. A policy whose expiry is extended must reach the kernel
// element too: Apply and Refresh replace an element whose expiry is
// earlier than the policy's by deleting and re-adding it in one
// transaction, so the address is never unblocked in between.
package nft

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// DefaultTable is the name of the inet table the backend owns.
const DefaultTable = "meshward"

// DefaultBatchSize is how many set elements one netlink batch (one Flush)
// carries. A batch must stay under the netlink socket's send buffer.
const DefaultBatchSize = 2048

// Defaults of WithFullReadEvery: Current reads the sets back in full at
// least every DefaultFullReadPasses calls or DefaultFullReadInterval.
const (
	DefaultFullReadPasses   = 10
	DefaultFullReadInterval = 10 * time.Minute
)

// refreshSlack is how much later than the kernel element's expiry a
// policy's must be for the element to be replaced. It absorbs the
// kernel's rounding of the life left (jiffies, milliseconds); an element
// whose policy is extended by less expires at most this early.
const refreshSlack = time.Second

// elementsPerMessage bounds the elements of one netlink message: its
// element list is a nested attribute whose length is 16 bits.
const elementsPerMessage = 512

// Set and chain names inside the table.
const (
	setV4    = "v4"
	setV6    = "v6"
	setV4Net = "v4net"
	setV6Net = "v6net"
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("nftables backend closed")

// Option configures a Firewall.
type Option func(*config) error

type config struct {
	table     string
	netns     int
	now       func() time.Time
	batchSize int
	fullEvery int
	fullAfter time.Duration
	seen      map[string]bool
}

func (c *config) once(name string) error {
	if c.seen[name] {
		return fmt.Errorf("option %s given twice", name)
	}
	c.seen[name] = true
	return nil
}

// WithTable sets the name of the inet table (default "meshward").
func WithTable(name string) Option {
	return func(c *config) error {
		if err := c.once("WithTable"); err != nil {
			return err
		}
		if name == "" || len(name) > 255 {
			return fmt.Errorf("table name %q must be 1 to 255 bytes", name)
		}
		c.table = name
		return nil
	}
}

// WithNetNS makes the backend work in the network namespace open as fd
// instead of the caller's. The caller keeps fd open while the backend is.
func WithNetNS(fd int) Option {
	return func(c *config) error {
		if err := c.once("WithNetNS"); err != nil {
			return err
		}
		if fd <= 0 {
			return fmt.Errorf("netns fd %d is not valid", fd)
		}
		c.netns = fd
		return nil
	}
}

// WithClock sets the clock element timeouts are computed from (default
// time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if err := c.once("WithClock"); err != nil {
			return err
		}
		if now == nil {
			return errors.New("clock is nil")
		}
		c.now = now
		return nil
	}
}

// WithBatchSize sets how many elements one netlink batch carries (default
// DefaultBatchSize).
func WithBatchSize(n int) Option {
	return func(c *config) error {
		if err := c.once("WithBatchSize"); err != nil {
			return err
		}
		if n < 1 || n > 16384 {
			return fmt.Errorf("batch size %d out of range 1..16384", n)
		}
		c.batchSize = n
		return nil
	}
}

// WithFullReadEvery makes Current read the sets back from the kernel in
// full at least every passes calls or every interval, whichever comes
// first (defaults DefaultFullReadPasses and DefaultFullReadInterval), on
// top of the reads a changed ruleset generation forces. One pass reads in
// full on every call, as a backend without a view would.
func WithFullReadEvery(passes int, interval time.Duration) Option {
	return func(c *config) error {
		if err := c.once("WithFullReadEvery"); err != nil {
			return err
		}
		if passes < 1 {
			return fmt.Errorf("full read every %d passes: must be at least 1", passes)
		}
		if interval <= 0 {
			return fmt.Errorf("full read interval %v must be positive", interval)
		}
		c.fullEvery, c.fullAfter = passes, interval
		return nil
	}
}

// Stats counts the backend's work.
type Stats struct {
	Batches       uint64 // netlink batches sent
	Added         uint64 // elements added
	Removed       uint64 // elements removed
	Repairs       uint64 // times the table, a set, a chain or a rule was (re)created
	Errors        uint64 // failed netlink operations
	SkippedExpiry uint64 // additions skipped because the policy had already expired
	UnstableReads uint64 // set dumps that disagreed with the one before (see stableElements)
	Refreshed     uint64 // elements replaced to extend their timeout
	FullReads     uint64 // times the sets were read back from the kernel in full
	ViewReads     uint64 // checks that found the ruleset unchanged and kept the view
	Drifts        uint64 // checks that found the ruleset changed by another writer
}

// Firewall is the nftables backend. The reconciler calls it from one
// goroutine; Teardown, List and Counters may be called concurrently with
// it (calls are serialised).
type Firewall struct {
	cfg   config
	conn  *nftables.Conn
	table *nftables.Table
	sets  map[string]*nftables.Set

	mu     sync.Mutex
	closed bool
	// nested holds CIDR blocks that lie inside a wider CIDR block in the
	// kernel: an interval set cannot hold overlapping ranges, so they are
	// enforced by the wider one and kept here until it goes.
	nested map[string]intel.Policy
	// view is what the kernel's sets hold as of ruleset generation gen;
	// nil when unknown. dirty means a change of ours may not have landed
	// as planned, or another writer committed in between.
	view  *state
	gen   uint32
	dirty bool
	// sinceFull counts Current calls since the last full read, at lastFull.
	sinceFull int
	lastFull  time.Time
	genConn   *netlink.Conn // lazily dialled; asks for the ruleset generation

	batches, added, removed, repairs, errs, skipped, unstable atomic.Uint64
	refreshed, fullReads, viewReads, drifts                   atomic.Uint64
}

// Refresher is the optional method a reconciler calls once per pass with
// the desired policies whose indicators Current reported as held, so that
// an extended expiry reaches the kernel element.
type Refresher interface {
	Refresh(ctx context.Context, held []intel.Policy) (int, error)
}

var _ Refresher = (*Firewall)(nil)

var (
	_ responders.Backend    = (*Firewall)(nil)
	_ responders.TypeFilter = (*Firewall)(nil)
)

// New returns a backend for the table named by the options. It opens a
// netlink socket but changes nothing until Current or Apply.
func New(opts ...Option) (*Firewall, error) {
	cfg := config{
		table: DefaultTable, now: time.Now, batchSize: DefaultBatchSize,
		fullEvery: DefaultFullReadPasses, fullAfter: DefaultFullReadInterval, seen: map[string]bool{},
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("nftables backend: %w", err)
		}
	}
	copts := []nftables.ConnOption{nftables.AsLasting()}
	if cfg.netns > 0 {
		copts = append(copts, nftables.WithNetNSFd(cfg.netns))
	}
	conn, err := nftables.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("nftables backend: open netlink: %w", err)
	}
	f := &Firewall{
		cfg:    cfg,
		conn:   conn,
		table:  &nftables.Table{Name: cfg.table, Family: nftables.TableFamilyINet},
		nested: make(map[string]intel.Policy),
	}
	f.sets = map[string]*nftables.Set{
		setV4:    {Table: f.table, Name: setV4, KeyType: nftables.TypeIPAddr, HasTimeout: true},
		setV6:    {Table: f.table, Name: setV6, KeyType: nftables.TypeIP6Addr, HasTimeout: true},
		setV4Net: {Table: f.table, Name: setV4Net, KeyType: nftables.TypeIPAddr, HasTimeout: true, Interval: true},
		setV6Net: {Table: f.table, Name: setV6Net, KeyType: nftables.TypeIP6Addr, HasTimeout: true, Interval: true},
	}
	return f, nil
}

// Name implements responders.Backend.
func (f *Firewall) Name() string { return "nftables" }

// Supports implements responders.TypeFilter: addresses and networks.
func (f *Firewall) Supports(t intel.IndicatorType) bool {
	return t == intel.IPv4 || t == intel.IPv6 || t == intel.CIDR
}

// Table returns the name of the inet table the backend owns.
func (f *Firewall) Table() string { return f.cfg.table }

// Stats returns the backend's counters.
func (f *Firewall) Stats() Stats {
	return Stats{
		Batches: f.batches.Load(), Added: f.added.Load(), Removed: f.removed.Load(),
		Repairs: f.repairs.Load(), Errors: f.errs.Load(), SkippedExpiry: f.skipped.Load(),
		UnstableReads: f.unstable.Load(), Refreshed: f.refreshed.Load(), FullReads: f.fullReads.Load(),
		ViewReads: f.viewReads.Load(), Drifts: f.drifts.Load(),
	}
}

// Close releases the netlink socket. It leaves the table in place, so
// that blocks survive a restart; Teardown removes it. Idempotent.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var gerr error
	if f.genConn != nil {
		gerr = f.genConn.Close()
	}
	if err := errors.Join(f.conn.CloseLasting(), gerr); err != nil {
		return fmt.Errorf("close netlink: %w", err)
	}
	return nil
}

func (f *Firewall) lock() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// Teardown deletes the backend's table, with its sets, chains and
// counters, and nothing else. A missing table is not an error.
func (f *Firewall) Teardown(ctx context.Context) error {
	if err := f.lock(); err != nil {
		return err
	}
	defer f.mu.Unlock()
	ok, err := f.tableExists()
	if err != nil || !ok {
		return err
	}
	f.conn.DelTable(f.table)
	f.view = nil
	if err := f.flush(); err != nil {
		return fmt.Errorf("delete table inet %s: %w", f.cfg.table, err)
	}
	clear(f.nested)
	return nil
}

// Current implements responders.Backend. It answers from the view,
// after checking the ruleset generation; when that shows another writer,
// or a full read is due, it first recreates whatever part of the table's
// structure is missing and reads the sets back.
func (f *Firewall) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	if err := f.lock(); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	now := f.cfg.now()
	f.sinceFull++
	due := f.sinceFull >= f.cfg.fullEvery || now.Sub(f.lastFull) >= f.cfg.fullAfter
	if err := f.sync(due); err != nil {
		return nil, err
	}
	v := f.view
	v.prune(now)
	out := make(map[string]intel.Indicator, len(v.addrs)+len(v.nets)+len(f.nested))
	for k, e := range v.addrs {
		out[k] = e.ind
	}
	for k, e := range v.nets {
		out[k] = e.ind
	}
	for k, p := range f.nested {
		if v.covered(p.Indicator) {
			out[k] = p.Indicator
		}
	}
	return out, nil
}

// sync makes f.view current: it keeps it if the ruleset generation is the
// one recorded after the backend's own last change and full is false;
// otherwise it repairs the structure and reads the sets back.
func (f *Firewall) sync(full bool) error {
	g, err := f.generation()
	if err != nil {
		return err
	}
	if f.view != nil && !f.dirty {
		if g == f.gen && !full {
			f.viewReads.Add(1)
			return nil
		}
		if g != f.gen {
			f.drifts.Add(1)
		}
	}
	f.view = nil
	if err := f.ensure(); err != nil {
		return err
	}
	// The generation is taken before the dump: a change committed during
	// the dump shows as a different generation at the next check.
	if g, err = f.generation(); err != nil {
		return err
	}
	st, err := f.read()
	if err != nil {
		return err
	}
	f.view, f.gen, f.dirty = st, g, false
	f.sinceFull, f.lastFull = 0, f.cfg.now()
	f.fullReads.Add(1)
	return nil
}

// generation returns the kernel's ruleset generation, which every
// committed nftables transaction in the namespace advances.
func (f *Firewall) generation() (uint32, error) {
	if f.genConn == nil {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: f.cfg.netns})
		if err != nil {
			f.errs.Add(1)
			return 0, fmt.Errorf("open netlink for the ruleset generation: %w", err)
		}
		f.genConn = c
	}
	msgs, err := f.genConn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		f.errs.Add(1)
		return 0, fmt.Errorf("read the ruleset generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("decode the ruleset generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, fmt.Errorf("decode the ruleset generation: %w", err)
		}
	}
	return 0, errors.New("read the ruleset generation: no generation in the reply")
}

// Apply implements responders.Backend. Elements travel in batches of the
// configured size, one Flush each; on error the batches already sent stay
// applied. An element already held with an earlier expiry than its
// policy's is replaced (deleted and re-added in one batch).
func (f *Firewall) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	if err := f.lock(); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if err := f.sync(false); err != nil {
		return err
	}
	return f.apply(ctx, add, remove)
}

// Refresh extends the kernel timeout of every held element whose policy
// in held expires later than the element (by more than a second), and
// returns how many it replaced. Policies whose indicators are not held
// are ignored: adding is Apply's business. A reconciler calls it once per
// pass with the desired policies Current reported, since Apply only
// receives the missing ones.
func (f *Firewall) Refresh(ctx context.Context, held []intel.Policy) (int, error) {
	if err := f.lock(); err != nil {
		return 0, err
	}
	defer f.mu.Unlock()
	if err := f.sync(false); err != nil {
		return 0, err
	}
	now := f.cfg.now()
	v := f.view
	var ext []intel.Policy
	for _, p := range held {
		k := p.Indicator.Key()
		switch p.Indicator.Type {
		case intel.IPv4, intel.IPv6:
			if e, ok := v.addrs[k]; ok && e.alive(now) && later(p, e) {
				ext = append(ext, p)
			}
		case intel.CIDR:
			if e, ok := v.nets[k]; ok && e.alive(now) && later(p, e) {
				ext = append(ext, p)
			} else if q, ok := f.nested[k]; ok && later(p, entry{expires: q.ExpiresAt}) {
				ext = append(ext, p)
			}
		}
	}
	if len(ext) == 0 {
		return 0, nil
	}
	before := f.refreshed.Load()
	err := f.apply(ctx, ext, nil)
	return int(f.refreshed.Load() - before), err
}

// later reports whether p should replace the element e: p never expires
// while e does, or p expires more than refreshSlack after e.
func later(p intel.Policy, e entry) bool {
	if e.expires.IsZero() {
		return false
	}
	return p.ExpiresAt.IsZero() || p.ExpiresAt.After(e.expires.Add(refreshSlack))
}

// apply plans the change against the view and sends it. f.view is valid.
func (f *Firewall) apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	v := f.view
	now := f.cfg.now()
	v.prune(now)
	b := batcher{f: f}

	// Single addresses: remove only what is held (deleting an absent
	// element fails the whole batch); add what is not held, and replace
	// what is held with an earlier expiry.
	for _, ind := range remove {
		if ind.Type != intel.IPv4 && ind.Type != intel.IPv6 {
			continue
		}
		if _, ok := v.addrs[ind.Key()]; !ok {
			continue
		}
		a, err := netip.ParseAddr(ind.Value)
		if err != nil {
			continue
		}
		b.queue(op{kind: opDel, set: f.addrSet(a), key: ind.Key(), els: []nftables.SetElement{{Key: a.AsSlice()}}})
	}
	var cidrAdd []intel.Policy
	for _, p := range add {
		switch p.Indicator.Type {
		case intel.IPv4, intel.IPv6:
			a, err := netip.ParseAddr(p.Indicator.Value)
			if err != nil {
				return fmt.Errorf("add %s: %w", p.Indicator.Key(), err)
			}
			to, ok := f.timeout(p, now)
			if !ok {
				continue
			}
			k := p.Indicator.Key()
			kind := opAdd
			if e, held := v.addrs[k]; held {
				if !later(p, e) {
					continue
				}
				kind = opReplace
			}
			b.queue(op{kind: kind, set: f.addrSet(a), key: k,
				ent: entry{ind: p.Indicator, expires: expiry(now, to)},
				els: []nftables.SetElement{{Key: a.AsSlice(), Timeout: to}}})
		case intel.CIDR:
			cidrAdd = append(cidrAdd, p)
		}
	}
	if err := f.applyNets(&b, v, cidrAdd, remove, now); err != nil {
		return err
	}
	return b.done(ctx)
}

// expiry is the view's expiry of an element added at now with timeout to
// (zero: none). The kernel's is no earlier.
func expiry(now time.Time, to time.Duration) time.Time {
	if to == 0 {
		return time.Time{}
	}
	return now.Add(to)
}

// applyNets plans the CIDR changes. Networks either nest or are disjoint,
// so the kernel holds the outermost of the wanted networks and the rest
// wait in f.nested.
func (f *Firewall) applyNets(b *batcher, v *state, add []intel.Policy, remove []intel.Indicator, now time.Time) error {
	held := make(map[string]intel.Policy) // every CIDR held, in kernel or nested
	for k, e := range v.nets {
		held[k] = intel.Policy{Indicator: e.ind, ExpiresAt: e.expires}
	}
	for k, p := range f.nested {
		if v.covered(p.Indicator) {
			held[k] = p
		}
	}
	changed := false
	for _, ind := range remove {
		if ind.Type == intel.CIDR {
			if _, ok := held[ind.Key()]; ok {
				delete(held, ind.Key())
				changed = true
			}
		}
	}
	replace := make(map[string]bool)
	for _, p := range add {
		if _, ok := f.timeout(p, now); !ok {
			continue
		}
		if _, ok := p.Indicator.Prefix(); !ok {
			return fmt.Errorf("add %s: not a network", p.Indicator.Key())
		}
		k := p.Indicator.Key()
		if q, ok := held[k]; ok {
			if !later(p, entry{expires: q.ExpiresAt}) {
				continue
			}
			if _, inKernel := v.nets[k]; inKernel {
				replace[k] = true
			}
		}
		held[k] = p
		changed = true
	}
	if !changed {
		return nil
	}
	outer, inner := outermost(held)
	clear(f.nested)
	for _, p := range inner {
		f.nested[p.Indicator.Key()] = p
	}
	want := make(map[string]bool, len(outer))
	for _, p := range outer {
		want[p.Indicator.Key()] = true
	}
	for k, e := range v.nets {
		if !want[k] {
			b.queue(op{kind: opDel, net: true, set: f.netSet(e.pfx), key: k, els: intervalElems(e.pfx, 0)})
		}
	}
	for _, p := range outer {
		k := p.Indicator.Key()
		kind := opAdd
		if _, ok := v.nets[k]; ok {
			if !replace[k] {
				continue
			}
			kind = opReplace
		}
		to, ok := f.timeout(p, now)
		if !ok {
			continue
		}
		pfx, _ := p.Indicator.Prefix()
		b.queue(op{kind: kind, net: true, set: f.netSet(pfx), key: k,
			ent: entry{ind: p.Indicator, pfx: pfx, expires: expiry(now, to)}, els: intervalElems(pfx, to)})
	}
	return nil
}

// outermost splits held into the networks no other held network contains,
// and the rest.
func outermost(held map[string]intel.Policy) (outer, inner []intel.Policy) {
	type item struct {
		p   intel.Policy
		pfx netip.Prefix
	}
	items := make([]item, 0, len(held))
	for _, p := range held {
		pfx, _ := p.Indicator.Prefix()
		items = append(items, item{p, pfx})
	}
	slices.SortFunc(items, func(a, b item) int {
		if c := a.pfx.Addr().Compare(b.pfx.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.pfx.Bits(), b.pfx.Bits())
	})
	var cur netip.Prefix
	for _, it := range items {
		if cur.IsValid() && cur.Addr().BitLen() == it.pfx.Addr().BitLen() && cur.Contains(it.pfx.Addr()) {
			inner = append(inner, it.p)
			continue
		}
		cur = it.pfx
		outer = append(outer, it.p)
	}
	return outer, inner
}

// intervalElems returns the elements of pfx in an interval set: its first
// address, and the address after its last as the interval end (omitted
// when the network reaches the top of the address space).
func intervalElems(pfx netip.Prefix, timeout time.Duration) []nftables.SetElement {
	first := pfx.Masked().Addr()
	els := []nftables.SetElement{{Key: first.AsSlice(), Timeout: timeout}}
	if end := lastAddr(pfx).Next(); end.IsValid() {
		els = append(els, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
	}
	return els
}

func lastAddr(pfx netip.Prefix) netip.Addr {
	b := pfx.Masked().Addr().AsSlice()
	for i := pfx.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// timeout returns the element timeout for p at now: zero for a policy
// that never expires; ok is false if it has already expired.
func (f *Firewall) timeout(p intel.Policy, now time.Time) (time.Duration, bool) {
	if p.ExpiresAt.IsZero() {
		return 0, true
	}
	d := p.ExpiresAt.Sub(now)
	if d <= 0 {
		f.skipped.Add(1)
		return 0, false
	}
	// The kernel counts in milliseconds; round up so that an element
	// never expires before its policy.
	return (d + time.Millisecond - 1).Truncate(time.Millisecond), true
}

func (f *Firewall) addrSet(a netip.Addr) *nftables.Set {
	if a.Is4() {
		return f.sets[setV4]
	}
	return f.sets[setV6]
}

func (f *Firewall) netSet(p netip.Prefix) *nftables.Set {
	if p.Addr().Is4() {
		return f.sets[setV4Net]
	}
	return f.sets[setV6Net]
}

func (f *Firewall) flush() error {
	f.batches.Add(1)
	if err := f.conn.Flush(); err != nil {
		f.errs.Add(1)
		return err
	}
	return nil
}

// batcher queues element changes and sends them in batches of at most
// batchSize elements, one transaction each.
type batcher struct {
	f   *Firewall
	ops []op
}

type opKind int

// Deletions go first, so that a network can be replaced by a wider one;
// an element is replaced by deleting and re-adding it in one batch.
const (
	opDel opKind = iota
	opReplace
	opAdd
)

type op struct {
	kind opKind
	net  bool // an element of an interval set
	set  *nftables.Set
	key  string
	ent  entry // what the view holds after an add or replace
	els  []nftables.SetElement
}

func (o op) weight() int {
	if o.kind == opReplace {
		return 2 * len(o.els)
	}
	return len(o.els)
}

func (b *batcher) queue(o op) { b.ops = append(b.ops, o) }

// done sends the queued changes: deletions first, then replacements,
// then additions, each batch keeping an op whole. Consecutive changes to
// the same set share netlink messages.
func (b *batcher) done(ctx context.Context) error {
	ops := slices.Clone(b.ops)
	slices.SortStableFunc(ops, func(x, y op) int {
		if c := cmp.Compare(x.kind, y.kind); c != 0 {
			return c
		}
		return cmp.Compare(x.set.Name, y.set.Name)
	})
	var batch []op
	n := 0
	for _, o := range ops {
		if n > 0 && n+o.weight() > b.f.cfg.batchSize {
			if err := b.send(ctx, batch, n); err != nil {
				return err
			}
			batch, n = nil, 0
		}
		batch = append(batch, o)
		n += o.weight()
	}
	if n == 0 {
		return nil
	}
	return b.send(ctx, batch, n)
}

// send commits one batch (deletions before additions) and records it in
// the view.
func (b *batcher) send(ctx context.Context, batch []op, n int) error {
	f := b.f
	if err := ctx.Err(); err != nil {
		return err
	}
	g0, err := f.generation()
	if err != nil {
		f.dirty = true
		return err
	}
	for _, del := range []bool{true, false} {
		var (
			cur *nftables.Set
			msg []nftables.SetElement
		)
		sendMsg := func() error {
			if len(msg) == 0 {
				return nil
			}
			var err error
			if del {
				err = f.conn.SetDeleteElements(cur, msg)
			} else {
				err = f.conn.SetAddElements(cur, msg)
			}
			msg = nil
			return err
		}
		for _, o := range batch {
			if (del && o.kind == opAdd) || (!del && o.kind == opDel) {
				continue
			}
			els := o.els
			if del && o.kind == opReplace {
				els = withoutTimeout(els)
			}
			// Keep an interval's start and end in one message.
			if cur != o.set || len(msg)+len(els) > elementsPerMessage {
				if err := sendMsg(); err != nil {
					f.dirty = true
					return err
				}
				cur = o.set
			}
			msg = append(msg, els...)
		}
		if err := sendMsg(); err != nil {
			f.dirty = true
			return err
		}
	}
	if err := f.commit(g0); err != nil {
		return fmt.Errorf("apply batch of %d elements: %w", n, err)
	}
	v := f.view
	for _, o := range batch {
		m := v.addrs
		if o.net {
			m = v.nets
		}
		switch o.kind {
		case opDel:
			delete(m, o.key)
			f.removed.Add(1)
		case opReplace:
			m[o.key] = o.ent
			f.refreshed.Add(1)
		case opAdd:
			m[o.key] = o.ent
			f.added.Add(1)
		}
	}
	return nil
}

func withoutTimeout(els []nftables.SetElement) []nftables.SetElement {
	out := slices.Clone(els)
	for i := range out {
		out[i].Timeout = 0
	}
	return out
}

// commit sends the queued batch as one transaction. g0 is the ruleset
// generation read before the batch was queued: if it is not the view's,
// or the transaction did not advance it by exactly one, another writer
// committed in between and the view is marked dirty, so that the next
// check reads the sets back. A failed transaction marks it dirty too.
func (f *Firewall) commit(g0 uint32) error {
	if err := f.flush(); err != nil {
		f.dirty = true
		return err
	}
	g1, err := f.generation()
	if err != nil {
		f.dirty = true
		return err
	}
	if g0 != f.gen || g1 != g0+1 {
		f.dirty = true
	}
	f.gen = g1
	return nil
}

// tableExists reports whether the backend's table is in the kernel.
func (f *Firewall) tableExists() (bool, error) {
	tables, err := f.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		f.errs.Add(1)
		return false, fmt.Errorf("list inet tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == f.cfg.table {
			return true, nil
		}
	}
	return false, nil
}

var hooks = []struct {
	name string
	hook *nftables.ChainHook
}{
	{"input", nftables.ChainHookInput},
	{"forward", nftables.ChainHookForward},
}

// ensure creates whatever part of the table is missing: the table, a set,
// a chain, or a chain's rules (a chain whose rules differ is flushed and
// refilled). Elements are not its business.
func (f *Firewall) ensure() error {
	ok, err := f.tableExists()
	if err != nil {
		return err
	}
	repairs := 0
	if !ok {
		f.conn.AddTable(f.table)
		repairs++
	}
	have := map[string]bool{}
	if ok {
		sets, err := f.conn.GetSets(f.table)
		if err != nil {
			f.errs.Add(1)
			return fmt.Errorf("list sets of inet %s: %w", f.cfg.table, err)
		}
		for _, s := range sets {
			have[s.Name] = true
		}
	}
	for _, name := range []string{setV4, setV6, setV4Net, setV6Net} {
		if have[name] {
			continue
		}
		if err := f.conn.AddSet(f.sets[name], nil); err != nil {
			return fmt.Errorf("add set %s: %w", name, err)
		}
		repairs++
	}
	chains := map[string]bool{}
	if ok {
		cs, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			f.errs.Add(1)
			return fmt.Errorf("list chains of inet %s: %w", f.cfg.table, err)
		}
		for _, c := range cs {
			if c.Table.Name == f.cfg.table {
				chains[c.Name] = true
			}
		}
	}
	for _, h := range hooks {
		ch := &nftables.Chain{Name: h.name, Table: f.table, Type: nftables.ChainTypeFilter, Hooknum: h.hook, Priority: nftables.ChainPriorityFilter}
		if chains[h.name] {
			rules, err := f.conn.GetRules(f.table, ch)
			if err != nil {
				f.errs.Add(1)
				return fmt.Errorf("list rules of chain %s: %w", h.name, err)
			}
			if rulesIntact(rules) {
				continue
			}
			f.conn.FlushChain(ch)
		} else {
			f.conn.AddChain(ch)
		}
		repairs++
		for _, name := range []string{setV4, setV6, setV4Net, setV6Net} {
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: dropExprs(f.sets[name])})
		}
	}
	if repairs == 0 {
		return nil
	}
	f.repairs.Add(1)
	if err := f.flush(); err != nil {
		return fmt.Errorf("create table inet %s: %w", f.cfg.table, err)
	}
	return nil
}

// rulesIntact reports whether a chain holds exactly the four drop rules.
func rulesIntact(rules []*nftables.Rule) bool {
	if len(rules) != 4 {
		return false
	}
	want := map[string]bool{setV4: true, setV6: true, setV4Net: true, setV6Net: true}
	for _, r := range rules {
		found := false
		for _, e := range r.Exprs {
			if l, ok := e.(*expr.Lookup); ok && want[l.SetName] {
				delete(want, l.SetName)
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return len(want) == 0
}

// dropExprs is "meta nfproto ipvX; ipX saddr @set counter drop".
func dropExprs(s *nftables.Set) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if s.KeyType == nftables.TypeIP6Addr {
		proto, off, n = unix.NFPROTO_IPV6, 8, 16
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// state is what the kernel's sets hold.
type state struct {
	addrs map[string]entry
	nets  map[string]entry // the interval sets' elements
}

// entry is one element of a set.
type entry struct {
	ind     intel.Indicator
	pfx     netip.Prefix // of a network
	expires time.Time    // zero: no timeout
}

func (e entry) alive(now time.Time) bool { return e.expires.IsZero() || e.expires.After(now) }

// prune drops the elements the kernel has expired by now.
func (s *state) prune(now time.Time) {
	for _, m := range []map[string]entry{s.addrs, s.nets} {
		maps.DeleteFunc(m, func(_ string, e entry) bool { return !e.alive(now) })
	}
}

// covered reports whether a network in the kernel contains ind.
func (s *state) covered(ind intel.Indicator) bool {
	p, ok := ind.Prefix()
	if !ok {
		return false
	}
	for _, e := range s.nets {
		if q := e.pfx; q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// read reads the sets back from the kernel.
func (f *Firewall) read() (*state, error) {
	st := &state{addrs: map[string]entry{}, nets: map[string]entry{}}
	now := f.cfg.now()
	for _, name := range []string{setV4, setV6} {
		els, err := f.stableElements(f.sets[name])
		if err != nil {
			return nil, err
		}
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			ind := intel.IndicatorFromAddr(a)
			ent := entry{ind: ind}
			if e.Timeout > 0 {
				ent.expires = now.Add(e.Expires)
			}
			st.addrs[ind.Key()] = ent
		}
	}
	for _, name := range []string{setV4Net, setV6Net} {
		els, err := f.stableElements(f.sets[name])
		if err != nil {
			return nil, err
		}
		for _, r := range ranges(els) {
			ind := intel.Indicator{Type: intel.CIDR, Value: r.pfx.String()}
			ent := entry{ind: ind, pfx: r.pfx}
			if r.timeout > 0 {
				ent.expires = now.Add(r.expires)
			}
			st.nets[ind.Key()] = ent
		}
	}
	return st, nil
}

// A dump of a set larger than one netlink message resumes by position, so
// one that overlaps a resize of the kernel's hash table (which runs
// deferred, after a large insert) can skip some elements and repeat
// others. A dump with a repeated element is therefore read again.
const maxDumps = 5

func (f *Firewall) stableElements(s *nftables.Set) ([]nftables.SetElement, error) {
	var els []nftables.SetElement
	for range maxDumps {
		var err error
		els, err = f.conn.GetSetElements(s)
		if err != nil {
			f.errs.Add(1)
			return nil, fmt.Errorf("read set %s: %w", s.Name, err)
		}
		keys := make(map[string]struct{}, len(els))
		for _, e := range els {
			keys[elemKey(e)] = struct{}{}
		}
		if len(keys) == len(els) {
			return els, nil
		}
		f.unstable.Add(1)
	}
	return els, nil
}

func elemKey(e nftables.SetElement) string {
	if e.IntervalEnd {
		return "e" + string(e.Key)
	}
	return "s" + string(e.Key)
}

type netRange struct {
	pfx              netip.Prefix
	timeout, expires time.Duration
}

// ranges pairs the start and end elements of an interval set (the kernel
// dumps them in any order) and returns those that form a prefix.
func ranges(els []nftables.SetElement) []netRange {
	type el struct {
		a                netip.Addr
		end              bool
		timeout, expires time.Duration
	}
	list := make([]el, 0, len(els))
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		list = append(list, el{a, e.IntervalEnd, e.Timeout, e.Expires})
	}
	slices.SortFunc(list, func(x, y el) int {
		if c := x.a.Compare(y.a); c != 0 {
			return c
		}
		switch {
		case x.end == y.end:
			return 0
		case x.end:
			return -1
		}
		return 1
	})
	var out []netRange
	for i, e := range list {
		if e.end {
			continue
		}
		var next netip.Addr // zero: open to the top
		if i+1 < len(list) && list[i+1].end {
			next = list[i+1].a
		}
		if pfx, ok := rangePrefix(e.a, next); ok {
			out = append(out, netRange{pfx, e.timeout, e.expires})
		}
	}
	return out
}

// rangePrefix returns the prefix covering exactly [first, end), where an
// invalid end means the top of the address space.
func rangePrefix(first, end netip.Addr) (netip.Prefix, bool) {
	for bits := first.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(first, bits)
		if p.Masked().Addr() != first {
			break
		}
		next := lastAddr(p).Next()
		if next == end || (!end.IsValid() && !next.IsValid()) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// ErrNoTable is returned by List and Counters when the table does not
// exist.
var ErrNoTable = errors.New("table does not exist")

// Entry is one block the table holds.
type Entry struct {
	Indicator intel.Indicator
	// Expires is the life the element has left; zero means no timeout.
	Expires time.Duration
	// Nested is true for a network held inside a wider one (not itself
	// an element of the interval set).
	Nested bool
}

// List returns what the table holds, sorted by key. It changes nothing.
func (f *Firewall) List(ctx context.Context) ([]Entry, error) {
	if err := f.lock(); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	ok, err := f.tableExists()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("inet %s: %w", f.cfg.table, ErrNoTable)
	}
	st, err := f.read()
	if err != nil {
		return nil, err
	}
	now := f.cfg.now()
	left := func(e entry) time.Duration {
		if e.expires.IsZero() {
			return 0
		}
		return max(e.expires.Sub(now), time.Millisecond)
	}
	var out []Entry
	for _, e := range st.addrs {
		out = append(out, Entry{Indicator: e.ind, Expires: left(e)})
	}
	for _, e := range st.nets {
		out = append(out, Entry{Indicator: e.ind, Expires: left(e)})
	}
	for _, p := range f.nested {
		if st.covered(p.Indicator) {
			out = append(out, Entry{Indicator: p.Indicator, Nested: true})
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Indicator.Key(), b.Indicator.Key()) })
	return out, nil
}

// RuleCounter is the counter of one drop rule.
type RuleCounter struct {
	Chain   string `json:"chain"` // "input" or "forward"
	Set     string `json:"set"`   // the set the rule looks up
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Counters returns the packets and bytes each drop rule has dropped.
func (f *Firewall) Counters(ctx context.Context) ([]RuleCounter, error) {
	if err := f.lock(); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	ok, err := f.tableExists()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("inet %s: %w", f.cfg.table, ErrNoTable)
	}
	var out []RuleCounter
	for _, h := range hooks {
		rules, err := f.conn.GetRules(f.table, &nftables.Chain{Name: h.name, Table: f.table})
		if err != nil {
			f.errs.Add(1)
			return nil, fmt.Errorf("list rules of chain %s: %w", h.name, err)
		}
		for _, r := range rules {
			rc := RuleCounter{Chain: h.name}
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Lookup:
					rc.Set = e.SetName
				case *expr.Counter:
					rc.Packets, rc.Bytes = e.Packets, e.Bytes
				}
			}
			out = append(out, rc)
		}
	}
	return out, nil
}
