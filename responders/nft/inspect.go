package nft

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/meshward/meshward/intel"
)

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

// lockTable takes the backend's lock and checks that its table is in the
// kernel (ErrNoTable otherwise). On nil the caller holds the lock.
func (f *Firewall) lockTable() error {
	if err := f.lock(); err != nil {
		return err
	}
	ok, err := f.tableExists()
	if err == nil && !ok {
		err = fmt.Errorf("inet %s: %w", f.cfg.table, ErrNoTable)
	}
	if err != nil {
		f.mu.Unlock()
		return err
	}
	return nil
}

// List returns what the table holds, sorted by key. It changes nothing.
func (f *Firewall) List(ctx context.Context) ([]Entry, error) {
	if err := f.lockTable(); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	st, err := f.read()
	if err != nil {
		return nil, err
	}
	now := f.cfg.now()
	left := func(e entry) time.Duration {
		if e.expires == 0 {
			return 0
		}
		return max(e.expiry().Sub(now), time.Millisecond)
	}
	var out []Entry
	for k, exp := range st.addrs {
		out = append(out, Entry{Indicator: intel.IndicatorFromAddr(k.addr()), Expires: left(entry{expires: exp})})
	}
	for k, e := range st.nets {
		out = append(out, Entry{Indicator: indOf(k), Expires: left(e)})
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
	if err := f.lockTable(); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
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
