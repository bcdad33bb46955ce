package nft

import (
	"context"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

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
	f.seg.hash = ""
	if err := f.flush(); err != nil {
		return fmt.Errorf("delete table inet %s: %w", f.cfg.table, err)
	}
	f.clearNested()
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
