package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// DefaultTable is the name of the inet table the backend owns.
const DefaultTable = "meshward"

// DefaultBatchSize is how many set elements one netlink batch (one
// transaction) carries at most. A batch also stays under what one
// sendmsg on the backend's socket may carry.
const DefaultBatchSize = 65536

// refreshSlack is how much later than the kernel element's expiry a
// policy's must be for the element to be replaced. It absorbs the
// kernel's rounding of the life left (jiffies, milliseconds); an element
// whose policy is extended by less expires at most this early.
const refreshSlack = time.Second

// Set and chain names inside the table.
const (
	setV4    = "v4"
	setV6    = "v6"
	setV4Net = "v4net"
	setV6Net = "v6net"
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("nftables backend closed")

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
	DigestMatches uint64 // Compare calls answered by the digest of the view's keys
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
	// nestedIdx is the nested networks' prefixes sorted, when
	// nestedIdxOK (nets.go).
	nestedIdx   []netip.Prefix
	nestedIdxOK bool
	// view is what the kernel's sets hold as of ruleset generation gen;
	// nil when unknown. dirty means a change of ours may not have landed
	// as planned, or another writer committed in between.
	view  *state
	gen   uint32
	dirty bool
	// sinceFull counts Current and Compare calls since the last full
	// read, at lastFull (see WithFullReadEvery).
	sinceFull int
	lastFull  time.Time
	// nl is the backend's own netlink socket, lazily dialled: it asks
	// for the ruleset generation and carries element batches. sendBuf
	// is its send buffer as granted.
	nl      *netlink.Conn
	sendBuf int
	// seg is the segmentation in force (segment_apply.go).
	seg segState

	batches, added, removed, repairs, errs, skipped, unstable atomic.Uint64
	refreshed, fullReads, viewReads, drifts, digestMatches    atomic.Uint64
}

var (
	_ responders.Backend    = (*Firewall)(nil)
	_ responders.TypeFilter = (*Firewall)(nil)
	_ responders.Refresher  = (*Firewall)(nil)
	_ responders.Comparer   = (*Firewall)(nil)
	_ responders.Holder     = (*Firewall)(nil)
)

// New returns a backend for the table named by the options. It opens a
// netlink socket but changes nothing until Current or Apply.
func New(opts ...Option) (*Firewall, error) {
	cfg := config{
		table: DefaultTable, now: time.Now, batchSize: DefaultBatchSize,
		seen: map[string]bool{},
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

		nestedIdxOK: true,
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
		ViewReads: f.viewReads.Load(), Drifts: f.drifts.Load(), DigestMatches: f.digestMatches.Load(),
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
	if f.nl != nil {
		gerr = f.nl.Close()
		f.nl = nil
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
