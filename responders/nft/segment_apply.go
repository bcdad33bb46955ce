package nft

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// segUserPrefix starts the user data of every segmentation rule: the
// prefix, then the rule's tag.
const segUserPrefix = "meshward-seg "

// SegmentStats counts the segmentation work of a Firewall.
type SegmentStats struct {
	Applies   uint64 // transactions that replaced the segmentation
	Unchanged uint64 // ApplySegmentation calls that found the same hash in force
	Failures  uint64 // failed transactions
}

// segState is what the Firewall knows of the segmentation it enforces;
// guarded by Firewall.mu.
type segState struct {
	hash      string
	applies   uint64
	unchanged uint64
	failures  uint64
}

var segChains = []struct {
	name string
	hook *nftables.ChainHook
}{
	{segInput, nftables.ChainHookInput},
	{segForward, nftables.ChainHookForward},
}

func (f *Firewall) segChain(name string, hook *nftables.ChainHook) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: f.table, Type: nftables.ChainTypeFilter, Hooknum: hook,
		Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter + segPriority)}
}

// ApplySegmentation makes the table enforce p: both segmentation chains
// and every set they name replaced in one transaction, so that no packet
// sees half of the old program and half of the new. Nothing is sent when
// p's hash is the one in force, unless force is set (a repair after
// drift). The block sets and chains are not touched. It reports whether
// it sent a transaction.
func (f *Firewall) ApplySegmentation(ctx context.Context, p *SegmentProgram, force bool) (bool, error) {
	if err := f.lock(); err != nil {
		return false, err
	}
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if !force && p.Hash != "" && p.Hash == f.seg.hash {
		f.seg.unchanged++
		return false, nil
	}
	if err := f.applySegmentation(p); err != nil {
		f.seg.failures++
		f.seg.hash = ""
		return false, fmt.Errorf("apply segmentation: %w", err)
	}
	f.seg.applies++
	f.seg.hash = p.Hash
	return true, nil
}

// SegmentStats returns the segmentation counters.
func (f *Firewall) SegmentStats() SegmentStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return SegmentStats{Applies: f.seg.applies, Unchanged: f.seg.unchanged, Failures: f.seg.failures}
}

// applySegmentation builds and sends the transaction. f.mu is held.
func (f *Firewall) applySegmentation(p *SegmentProgram) error {
	// A connection of its own, with the send buffer a transaction of a
	// thousand flows needs, and the receive buffer for the kernel's
	// acknowledgement of each of its messages (read after the whole
	// batch is sent); one socket per transaction.
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		setSendBuffer(c, defaultSendBuf)
		setRecvBuffer(c, segRecvBuf)
		return nil
	})}
	if f.cfg.netns > 0 {
		opts = append(opts, nftables.WithNetNSFd(f.cfg.netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	exists, err := f.tableExists()
	if err != nil {
		return err
	}
	haveChains := map[string]bool{}
	haveSets := map[string]*nftables.Set{}
	if exists {
		cs, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			f.errs.Add(1)
			return fmt.Errorf("list chains of inet %s: %w", f.cfg.table, err)
		}
		for _, ch := range cs {
			if ch.Table.Name == f.cfg.table {
				haveChains[ch.Name] = true
			}
		}
		sets, err := f.conn.GetSets(f.table)
		if err != nil {
			f.errs.Add(1)
			return fmt.Errorf("list sets of inet %s: %w", f.cfg.table, err)
		}
		for _, s := range sets {
			if strings.HasPrefix(s.Name, segSetPfx) {
				haveSets[s.Name] = s
			}
		}
	}
	c.AddTable(f.table)
	chains := map[string]*nftables.Chain{}
	for _, sc := range segChains {
		ch := f.segChain(sc.name, sc.hook)
		chains[sc.name] = ch
		if haveChains[sc.name] {
			c.FlushChain(ch)
		} else {
			c.AddChain(ch)
		}
	}
	// Sets: old ones no rule names any more go (their rules were flushed
	// above, in the same transaction); kept ones are emptied and refilled.
	sets := map[string]*nftables.Set{}
	for _, s := range p.Sets {
		set := &nftables.Set{Table: f.table, Name: s.Name, KeyType: nftables.TypeIPAddr, Interval: s.Interval}
		if s.V6 {
			set.KeyType = nftables.TypeIP6Addr
		}
		els := setElements(s)
		if old, ok := haveSets[s.Name]; ok && old.Interval == s.Interval && old.KeyType.Name == set.KeyType.Name {
			c.FlushSet(set)
			if len(els) > 0 {
				if err := c.SetAddElements(set, els); err != nil {
					return fmt.Errorf("fill set %s: %w", s.Name, err)
				}
			}
			delete(haveSets, s.Name)
		} else {
			if ok {
				c.DelSet(old)
				delete(haveSets, s.Name)
			}
			if err := c.AddSet(set, els); err != nil {
				return fmt.Errorf("add set %s: %w", s.Name, err)
			}
		}
		sets[s.Name] = set
	}
	for _, old := range haveSets {
		c.DelSet(old)
	}
	for _, sc := range segChains {
		for _, r := range p.Rules(strings.TrimPrefix(sc.name, "seg-")) {
			ex, err := ruleExprs(r, sets)
			if err != nil {
				return err
			}
			c.AddRule(&nftables.Rule{Table: f.table, Chain: chains[sc.name], Exprs: ex, UserData: []byte(segUserPrefix + r.Tag)})
		}
	}
	// Keep the block view valid across our own transaction: it must
	// advance the ruleset generation by exactly one.
	before, gerr := f.generation()
	f.batches.Add(1)
	if err := c.Flush(); err != nil {
		f.errs.Add(1)
		return fmt.Errorf("transaction: %w", err)
	}
	after, err := f.generation()
	if gerr == nil && err == nil && f.view != nil && !f.dirty && before == f.gen && after == before+1 {
		f.gen = after
	}
	return nil
}

// segRecvBuf is the receive buffer asked for a segmentation transaction:
// room for some 20,000 acknowledgements.
const segRecvBuf = 8 << 20

// setRecvBuffer asks for size bytes of receive buffer, past the system
// maximum where the process may.
func setRecvBuffer(c *netlink.Conn, size int) {
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
			}
		})
	}
}

// setElements is the interval (or plain) set's elements for s's ranges:
// each range's first address, and the address after its last marked as
// an interval end (none at the top of the address space).
func setElements(s SegmentSet) []nftables.SetElement {
	els := make([]nftables.SetElement, 0, 2*len(s.Ranges))
	for _, r := range s.Ranges {
		els = append(els, nftables.SetElement{Key: r.From.AsSlice()})
		if !s.Interval {
			continue
		}
		if end := r.To.Next(); end.IsValid() {
			els = append(els, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return els
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// ruleExprs is the nftables form of r (see the layout in segment.go).
func ruleExprs(r SegmentRule, sets map[string]*nftables.Set) ([]expr.Any, error) {
	fam, srcOff, dstOff, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(16), uint32(4)
	if r.V6 {
		fam, srcOff, dstOff, n = unix.NFPROTO_IPV6, 8, 24, 16
	}
	ex := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam}},
	}
	if r.Proto != 0 {
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}})
	}
	lookup := func(set string, off uint32, invert bool) error {
		s, ok := sets[set]
		if !ok {
			return fmt.Errorf("rule %s names set %s, not in the program", r.Tag, set)
		}
		ex = append(ex,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert})
		return nil
	}
	if r.SrcSet != "" {
		if err := lookup(r.SrcSet, srcOff, r.SrcNot); err != nil {
			return nil, err
		}
	}
	if r.DstSet != "" {
		if err := lookup(r.DstSet, dstOff, r.DstNot); err != nil {
			return nil, err
		}
	}
	if r.PortTo != 0 {
		ex = append(ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		if r.PortFrom == r.PortTo {
			ex = append(ex, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(r.PortTo)})
		} else {
			ex = append(ex, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(r.PortFrom), ToData: be16(r.PortTo)})
		}
	}
	if r.ReplyToPort != 0 {
		ex = append(ex,
			// A reply's source port is its connection's original
			// destination port.
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}}, // IP_CT_DIR_REPLY
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(r.ReplyToPort)})
	}
	ex = append(ex, &expr.Counter{})
	if r.Log != "" {
		ex = append(ex, &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(r.Log)})
	}
	switch r.Verdict {
	case VerdictAccept:
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictAccept})
	case VerdictDrop:
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictDrop})
	default:
		return nil, fmt.Errorf("rule %s: verdict %q", r.Tag, r.Verdict)
	}
	return ex, nil
}

// SegmentCounter is the counter of one segmentation rule.
type SegmentCounter struct {
	Chain   string `json:"chain"` // "seg-input" or "seg-forward"
	Tag     string `json:"tag"`   // what the rule stands for (segment.go)
	V6      bool   `json:"v6,omitempty"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// SegmentCounters returns the counter of every segmentation rule in the
// kernel, in chain order.
func (f *Firewall) SegmentCounters(ctx context.Context) ([]SegmentCounter, error) {
	if err := f.lockTable(); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	var out []SegmentCounter
	for _, sc := range segChains {
		rules, err := f.segRules(sc.name)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			tag, _ := segTag(r)
			c := SegmentCounter{Chain: sc.name, Tag: tag}
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Counter:
					c.Packets, c.Bytes = e.Packets, e.Bytes
				case *expr.Cmp:
					if len(e.Data) == 1 && e.Data[0] == unix.NFPROTO_IPV6 && !c.V6 {
						c.V6 = true
					}
				}
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// segRules lists a segmentation chain's rules (none if it is missing).
// f.mu is held.
func (f *Firewall) segRules(chain string) ([]*nftables.Rule, error) {
	rules, err := f.conn.GetRules(f.table, &nftables.Chain{Name: chain, Table: f.table})
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		f.errs.Add(1)
		return nil, fmt.Errorf("list rules of chain %s: %w", chain, err)
	}
	return rules, nil
}

func isNotFound(err error) bool {
	return strings.Contains(err.Error(), "no such file or directory") || strings.Contains(err.Error(), "ENOENT")
}

func segTag(r *nftables.Rule) (string, bool) {
	return strings.CutPrefix(string(r.UserData), segUserPrefix)
}

// SegmentDrift compares what the kernel holds of the segmentation with
// p and returns what differs, one reason each ("flow office-db: rule
// missing from seg-input", "set seg-q4: 1 element missing"), or none
// when the kernel enforces p. Each rule is compared by its tag, its
// place, its verdict and its expressions; each set by its elements. It
// changes nothing.
func (f *Firewall) SegmentDrift(ctx context.Context, p *SegmentProgram) ([]string, error) {
	if err := f.lock(); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ok, err := f.tableExists()
	if err != nil {
		return nil, err
	}
	if !ok {
		if len(p.Input)+len(p.Forward) == 0 {
			return nil, nil
		}
		return []string{fmt.Sprintf("table inet %s missing", f.cfg.table)}, nil
	}
	var reasons []string
	sets := map[string]*nftables.Set{}
	for _, s := range p.Sets {
		sets[s.Name] = &nftables.Set{Table: f.table, Name: s.Name}
	}
	have := map[string]*nftables.Set{}
	all, err := f.conn.GetSets(f.table)
	if err != nil {
		f.errs.Add(1)
		return nil, fmt.Errorf("list sets of inet %s: %w", f.cfg.table, err)
	}
	for _, s := range all {
		have[s.Name] = s
	}
	for _, s := range p.Sets {
		ks, ok := have[s.Name]
		if !ok {
			reasons = append(reasons, fmt.Sprintf("set %s missing", s.Name))
			continue
		}
		els, err := f.conn.GetSetElements(ks)
		if err != nil {
			f.errs.Add(1)
			return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		got := map[string]bool{}
		for _, e := range els {
			got[elemKey(e)] = true
		}
		missing := 0
		for _, e := range setElements(s) {
			k := elemKey(e)
			if !got[k] {
				missing++
			}
			delete(got, k)
		}
		if missing > 0 {
			reasons = append(reasons, fmt.Sprintf("set %s: %d elements missing", s.Name, missing))
		}
		if len(got) > 0 {
			reasons = append(reasons, fmt.Sprintf("set %s: %d unexpected elements", s.Name, len(got)))
		}
	}
	for _, sc := range segChains {
		want := p.Rules(strings.TrimPrefix(sc.name, "seg-"))
		rules, err := f.segRules(sc.name)
		if err != nil {
			return nil, err
		}
		reasons = append(reasons, diffRules(sc.name, want, rules, sets)...)
	}
	return reasons, nil
}

// diffRules compares a chain's rules with the wanted ones, in order.
func diffRules(chain string, want []SegmentRule, got []*nftables.Rule, sets map[string]*nftables.Set) []string {
	var reasons []string
	// Line the kernel's rules up with the wanted ones by tag, in order:
	// the longest common subsequence would be exact, a greedy walk is
	// enough to name what is missing and what is extra.
	j := 0
	missing := map[string]int{}
	var order []string
	for _, w := range want {
		k := j
		for k < len(got) {
			if tag, _ := segTag(got[k]); tag == w.Tag && sameExprs(w, got[k], sets) {
				break
			}
			k++
		}
		if k == len(got) {
			if missing[w.Tag] == 0 {
				order = append(order, w.Tag)
			}
			missing[w.Tag]++
			continue
		}
		for _, extra := range got[j:k] {
			tag, _ := segTag(extra)
			reasons = append(reasons, fmt.Sprintf("%s: unexpected rule %q in %s", describeTag(tag), tag, chain))
		}
		j = k + 1
	}
	for _, extra := range got[j:] {
		tag, _ := segTag(extra)
		reasons = append(reasons, fmt.Sprintf("%s: unexpected rule %q in %s", describeTag(tag), tag, chain))
	}
	for _, tag := range order {
		reasons = append(reasons, fmt.Sprintf("%s: %d of its rules missing from %s", describeTag(tag), missing[tag], chain))
	}
	return reasons
}

// describeTag names what a rule tag stands for: "flow office-db".
func describeTag(tag string) string {
	kind, name, ok := strings.Cut(tag, ":")
	if !ok {
		return "rule " + tag
	}
	return kind + " " + name
}

// sameExprs reports whether the kernel's rule holds the expressions of
// w (counters compared without their values).
func sameExprs(w SegmentRule, got *nftables.Rule, sets map[string]*nftables.Set) bool {
	ex, err := ruleExprs(w, sets)
	if err != nil || len(ex) != len(got.Exprs) {
		return false
	}
	for i := range ex {
		if !sameExpr(ex[i], got.Exprs[i]) {
			return false
		}
	}
	return true
}

func sameExpr(a, b expr.Any) bool {
	switch a := a.(type) {
	case *expr.Meta:
		b, ok := b.(*expr.Meta)
		return ok && a.Key == b.Key && a.Register == b.Register
	case *expr.Cmp:
		b, ok := b.(*expr.Cmp)
		return ok && a.Op == b.Op && a.Register == b.Register && bytes.Equal(a.Data, b.Data)
	case *expr.Payload:
		b, ok := b.(*expr.Payload)
		return ok && a.Base == b.Base && a.Offset == b.Offset && a.Len == b.Len && a.DestRegister == b.DestRegister
	case *expr.Lookup:
		b, ok := b.(*expr.Lookup)
		return ok && a.SetName == b.SetName && a.Invert == b.Invert && a.SourceRegister == b.SourceRegister
	case *expr.Range:
		b, ok := b.(*expr.Range)
		return ok && a.Op == b.Op && bytes.Equal(a.FromData, b.FromData) && bytes.Equal(a.ToData, b.ToData)
	case *expr.Ct:
		b, ok := b.(*expr.Ct)
		return ok && a.Key == b.Key && a.Direction == b.Direction
	case *expr.Counter:
		_, ok := b.(*expr.Counter)
		return ok
	case *expr.Log:
		b, ok := b.(*expr.Log)
		return ok && bytes.Equal(bytes.TrimRight(a.Data, "\x00"), bytes.TrimRight(b.Data, "\x00"))
	case *expr.Verdict:
		b, ok := b.(*expr.Verdict)
		return ok && a.Kind == b.Kind
	}
	return false
}
