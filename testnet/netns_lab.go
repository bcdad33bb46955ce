//go:build linux

package testnet

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/meshward/meshward/intel"
)

// A Lab is the network of a namespace-mode mesh: one network namespace
// per node and a hub namespace holding a bridge, each node joined to it
// by a veth pair, addresses from LabPrefix. Nothing of it is in the
// host's namespace: the host's interfaces, routes and firewall are never
// touched, and no packet leaves the machine. Every name starts with the
// run's prefix (mwn-<6 hex>-), so that runs side by side and leftovers of
// a killed run never collide; Close removes every namespace it made.
type Lab struct {
	prefix string
	hub    string
	nodes  []string     // node namespaces
	addrs  []netip.Addr // node addresses, in LabPrefix
	// links are the delays in force and how (LinkNetem, LinkQueue);
	// delays are the queues of LinkQueue.
	links    []LabLink
	linkMode string
	delays   []*linkDelay

	mu     sync.Mutex
	fds    map[string]int // open namespace fds (nsFD)
	cut    bool           // the hub's partition table exists
	closed bool
}

// LabLink is latency and loss set between two sets of nodes.
type LabLink struct {
	A, B    []int
	Latency time.Duration
	Loss    float64
}

// LabPrefix is the range the nodes' addresses come from: private, and
// only ever routed inside the lab's own namespaces.
var LabPrefix = netip.MustParsePrefix("10.77.0.0/16")

// labTable is the lab's own nftables table: bridge family in the hub
// (partitions), ip family in a node's namespace (the delay queues' rules);
// the agents' table (inet meshward) is another.
const labTable = "meshward_lab"

// NetnsPreflight checks what namespace mode needs before anything is
// made: root, the ip command (and tc when netem is true).
func NetnsPreflight(netem bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: running as uid %d", ErrNetnsNotRoot, os.Geteuid())
	}
	cmds := []string{"ip"}
	if netem {
		cmds = append(cmds, "tc")
	}
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%w: %s (Debian package iproute2)", ErrNetnsNoCommand, c)
		}
	}
	return nil
}

func runCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NewLab makes the hub and n node namespaces, joined through the hub's
// bridge. On error whatever was made is removed.
func NewLab(ctx context.Context, n int) (_ *Lab, err error) {
	if n < 1 || n > 4000 {
		return nil, fmt.Errorf("lab: %d nodes: from 1 to 4000", n)
	}
	if err := NetnsPreflight(false); err != nil {
		return nil, err
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l := &Lab{prefix: "mwn-" + hex.EncodeToString(b) + "-", fds: map[string]int{}}
	l.hub = l.prefix + "hub"
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	if err := l.addNS(ctx, l.hub); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNetnsUnsupported, err)
	}
	if err := runCmd(ctx, "ip", "-n", l.hub, "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNetnsUnsupported, err)
	}
	if err := runCmd(ctx, "ip", "-n", l.hub, "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	base := LabPrefix.Addr().As4()
	for i := range n {
		ns := fmt.Sprintf("%sn%03d", l.prefix, i)
		if err := l.addNS(ctx, ns); err != nil {
			return nil, err
		}
		l.nodes = append(l.nodes, ns)
		// .0.1 to .0.254, then .1.1...: never .x.0 or .x.255.
		a := netip.AddrFrom4([4]byte{base[0], base[1], byte(i / 254), byte(i%254 + 1)})
		l.addrs = append(l.addrs, a)
		port := fmt.Sprintf("p%d", i)
		if err := runCmd(ctx, "ip", "-n", l.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNetnsUnsupported, err)
		}
		for _, c := range [][]string{
			{"ip", "-n", l.hub, "link", "set", port, "master", "br0", "up"},
			{"ip", "-n", ns, "addr", "add", fmt.Sprintf("%s/%d", a, LabPrefix.Bits()), "dev", "eth0"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
		} {
			if err := runCmd(ctx, c...); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

func (l *Lab) addNS(ctx context.Context, name string) error {
	if err := runCmd(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	l.mu.Lock()
	l.fds[name] = -1 // made: Close deletes it
	l.mu.Unlock()
	return runCmd(ctx, "ip", "-n", name, "link", "set", "lo", "up")
}

// Prefix is the run's name prefix: every namespace it made starts with it.
func (l *Lab) Prefix() string { return l.prefix }

// Namespace is node i's namespace.
func (l *Lab) Namespace(i int) string { return l.nodes[i] }

// Addr is node i's address.
func (l *Lab) Addr(i int) netip.Addr { return l.addrs[i] }

// Size is the number of nodes.
func (l *Lab) Size() int { return len(l.nodes) }

// Links are the delays set by SetLinks.
func (l *Lab) Links() []LabLink { return l.links }

// nsFD opens (once) the namespace's file.
func (l *Lab) nsFD(name string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return -1, errors.New("lab: closed")
	}
	if fd, ok := l.fds[name]; ok && fd >= 0 {
		return fd, nil
	}
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open network namespace %s: %w", name, err)
	}
	l.fds[name] = fd
	return fd, nil
}

// Link modes: how SetLinks delays packets.
const (
	// LinkNetem is the kernel's netem qdisc, on each node's eth0 (an htb
	// class per link, chosen by destination address).
	LinkNetem = "netem"
	// LinkQueue is the lab's own delay through NFQUEUE (netns_delay.go),
	// for kernels without netem.
	LinkQueue = "nfqueue"
)

// SetLinks puts latency and loss on the traffic between every node of
// a link's A and every node of its B, in each direction (a round trip
// takes twice the latency). mode is LinkNetem, LinkQueue, or "" for
// netem where the kernel has it (and tc is installed), else the queue.
func (l *Lab) SetLinks(ctx context.Context, links []LabLink, mode string) error {
	if len(links) == 0 {
		return nil
	}
	if mode == "" {
		mode = LinkQueue
		if _, err := exec.LookPath("tc"); err == nil && l.probeNetem(ctx) == nil {
			mode = LinkNetem
		}
	}
	// byNode: node -> (link, destination node) pairs.
	byNode := make(map[int][][2]int)
	for k, lk := range links {
		if lk.Loss < 0 || lk.Loss > 1 || lk.Latency < 0 {
			return fmt.Errorf("lab: link %d: loss is a fraction in [0, 1] and latency not negative", k)
		}
		for _, a := range lk.A {
			for _, b := range lk.B {
				if a < 0 || b < 0 || a >= len(l.nodes) || b >= len(l.nodes) {
					return fmt.Errorf("lab: link %d: node out of range", k)
				}
				byNode[a] = append(byNode[a], [2]int{k, b})
				byNode[b] = append(byNode[b], [2]int{k, a})
			}
		}
	}
	var err error
	switch mode {
	case LinkNetem:
		err = l.setNetem(ctx, links, byNode)
	case LinkQueue:
		err = l.setQueues(links, byNode)
	default:
		return fmt.Errorf("lab: link mode %q: allowed values are %s and %s", mode, LinkNetem, LinkQueue)
	}
	if err != nil {
		return err
	}
	l.links, l.linkMode = links, mode
	return nil
}

// LinkMode is how the links are delayed (LinkNetem or LinkQueue; "" when
// there are none).
func (l *Lab) LinkMode() string { return l.linkMode }

func (l *Lab) setNetem(ctx context.Context, links []LabLink, byNode map[int][][2]int) error {
	if err := NetnsPreflight(true); err != nil {
		return err
	}
	if err := l.probeNetem(ctx); err != nil {
		return err
	}
	for i, pairs := range byNode {
		ns := l.nodes[i]
		tcc := func(args ...string) error { return runCmd(ctx, append([]string{"tc", "-n", ns}, args...)...) }
		if err := tcc("qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "1"); err != nil {
			return err
		}
		if err := tcc("class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit"); err != nil {
			return err
		}
		done := map[int]bool{}
		for _, p := range pairs {
			k, dst := p[0], p[1]
			cls := fmt.Sprintf("1:%x", 16+k)
			if !done[k] {
				done[k] = true
				if err := tcc("class", "add", "dev", "eth0", "parent", "1:", "classid", cls, "htb", "rate", "10gbit"); err != nil {
					return err
				}
				args := []string{"qdisc", "add", "dev", "eth0", "parent", cls, "handle", fmt.Sprintf("%x:", 16+k), "netem",
					"delay", fmt.Sprintf("%dus", links[k].Latency.Microseconds()), "limit", "100000"}
				if links[k].Loss > 0 {
					args = append(args, "loss", fmt.Sprintf("%g%%", links[k].Loss*100))
				}
				if err := tcc(args...); err != nil {
					return err
				}
			}
			if err := tcc("filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
				"match", "ip", "dst", l.addrs[dst].String()+"/32", "flowid", cls); err != nil {
				return err
			}
		}
	}
	return nil
}

// setQueues binds a delay queue per link in each node's namespace, then
// adds the rules that feed them.
func (l *Lab) setQueues(links []LabLink, byNode map[int][][2]int) error {
	for i, pairs := range byNode {
		fd, err := l.nsFD(l.nodes[i])
		if err != nil {
			return err
		}
		dsts := map[uint16][][4]byte{}
		for _, p := range pairs {
			k, dst := uint16(p[0]), p[1]
			if _, ok := dsts[k]; !ok {
				d, err := startDelay(fd, k, links[k].Latency, links[k].Loss)
				if err != nil {
					return fmt.Errorf("%w: %s: %w", ErrNetnsNoLinks, l.nodes[i], err)
				}
				l.mu.Lock()
				l.delays = append(l.delays, d)
				l.mu.Unlock()
			}
			dsts[k] = append(dsts[k], l.addrs[dst].As4())
		}
		if err := queueRules(fd, dsts); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrNetnsNoLinks, l.nodes[i], err)
		}
	}
	return nil
}

// LinkStats sums the delay queues' counters: packets delayed, dropped
// for loss, and let through at once for want of room (LinkQueue only).
func (l *Lab) LinkStats() (delayed, dropped, overflow uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range l.delays {
		delayed += d.Delayed.Load()
		dropped += d.Dropped.Load()
		overflow += d.Overflow.Load()
	}
	return
}

// probeNetem adds and removes a netem qdisc on the hub's bridge.
func (l *Lab) probeNetem(ctx context.Context) error {
	if err := runCmd(ctx, "tc", "-n", l.hub, "qdisc", "add", "dev", "br0", "root", "netem", "delay", "1ms"); err != nil {
		return fmt.Errorf("%w (%v)", ErrNetnsNoNetem, err)
	}
	return runCmd(ctx, "tc", "-n", l.hub, "qdisc", "del", "dev", "br0", "root")
}

// Partition drops, in the hub's bridge, every IPv4 packet between nodes
// of different groups (nftables, bridge family, table meshward_lab);
// what was cut before is healed first.
func (l *Lab) Partition(groups ...[]int) error {
	fd, err := l.nsFD(l.hub)
	if err != nil {
		return err
	}
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return fmt.Errorf("lab: netlink in %s: %w", l.hub, err)
	}
	t := &nftables.Table{Name: labTable, Family: nftables.TableFamilyBridge}
	l.mu.Lock()
	cut := l.cut
	l.mu.Unlock()
	if cut {
		c.DelTable(t)
	}
	c.AddTable(t)
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	for gi, g := range groups {
		for gj, h := range groups {
			if gi == gj {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					src, dst := l.addrs[a].As4(), l.addrs[b].As4()
					c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
						&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
						&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, unix.ETH_P_IP)},
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
						&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: src[:]},
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
						&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dst[:]},
						&expr.Verdict{Kind: expr.VerdictDrop},
					}})
				}
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("lab: partition in %s: %w", l.hub, err)
	}
	l.mu.Lock()
	l.cut = true
	l.mu.Unlock()
	return nil
}

// Heal removes the partition.
func (l *Lab) Heal() error {
	l.mu.Lock()
	cut := l.cut
	l.mu.Unlock()
	if !cut {
		return nil
	}
	fd, err := l.nsFD(l.hub)
	if err != nil {
		return err
	}
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return fmt.Errorf("lab: netlink in %s: %w", l.hub, err)
	}
	c.DelTable(&nftables.Table{Name: labTable, Family: nftables.TableFamilyBridge})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("lab: heal in %s: %w", l.hub, err)
	}
	l.mu.Lock()
	l.cut = false
	l.mu.Unlock()
	return nil
}

// KernelBlocks reads, from the kernel, the addresses and networks in the
// sets of node i's inet table (the nftables responder's: v4, v6, v4net,
// v6net). A missing table is an empty answer.
func (l *Lab) KernelBlocks(i int, table string) (map[string]bool, error) {
	fd, err := l.nsFD(l.nodes[i])
	if err != nil {
		return nil, err
	}
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return nil, fmt.Errorf("lab: netlink in %s: %w", l.nodes[i], err)
	}
	out := map[string]bool{}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("lab: inet tables in %s: %w", l.nodes[i], err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == table }) {
		return out, nil
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("lab: sets of inet %s in %s: %w", table, l.nodes[i], err)
	}
	for _, s := range sets {
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("lab: set %s in %s: %w", s.Name, l.nodes[i], err)
		}
		if s.Interval {
			// Interval sets hold [start, end) pairs: the start element,
			// then the end element flagged IntervalEnd (listed first).
			var starts, ends []netip.Addr
			for _, e := range els {
				a, ok := netip.AddrFromSlice(e.Key)
				if !ok {
					continue
				}
				if e.IntervalEnd {
					ends = append(ends, a.Unmap())
				} else {
					starts = append(starts, a.Unmap())
				}
			}
			for _, st := range starts {
				if st.IsUnspecified() {
					continue // the gap before the first range
				}
				out[rangeOf(st, ends)] = true
			}
			continue
		}
		for _, e := range els {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				out[a.Unmap().String()] = true
			}
		}
	}
	return out, nil
}

// rangeOf is the CIDR that starts at st and ends at the smallest end
// above it (the first address past the range).
func rangeOf(st netip.Addr, ends []netip.Addr) string {
	var end netip.Addr
	for _, e := range ends {
		if e.Compare(st) > 0 && (!end.IsValid() || e.Compare(end) < 0) {
			end = e
		}
	}
	for bits := st.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(st, bits)
		if p.Masked().Addr() != st {
			break
		}
		last := lastAddr(p)
		if next := last.Next(); end.IsValid() && next == end || !end.IsValid() && !next.IsValid() {
			return p.String()
		}
	}
	return st.String() + "+" // a range that is no prefix
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Holds reports whether node i's kernel sets hold ind (an address, or a
// network as an element of an interval set).
func (l *Lab) Holds(i int, table string, ind intel.Indicator) (bool, error) {
	set, err := l.KernelBlocks(i, table)
	if err != nil {
		return false, err
	}
	return set[ind.Value], nil
}

// inNS runs fn on a locked thread moved into namespace ns; the thread is
// thrown away afterwards (the goroutine exits locked), so that no other
// goroutine ever runs in ns.
func (l *Lab) inNS(ns string, fn func() error) error {
	fd, err := l.nsFD(ns)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// DialTime opens a TCP connection from node i's namespace to addr and
// returns how long the handshake took (one round trip).
func (l *Lab) DialTime(ctx context.Context, i int, addr string) (time.Duration, error) {
	var took time.Duration
	err := l.inNS(l.nodes[i], func() error {
		var d net.Dialer
		start := time.Now()
		c, err := d.DialContext(ctx, "tcp", addr)
		took = time.Since(start)
		if err != nil {
			return err
		}
		return c.Close()
	})
	return took, err
}

// Close deletes every namespace the lab made (the veths and the bridge
// go with them). Idempotent.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	fds, delays := l.fds, l.delays
	l.mu.Unlock()
	for _, d := range delays {
		d.close()
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, fd := range fds {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		if err := runCmd(ctx, "ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// LeftoverNamespaces lists the namespaces whose names start with prefix.
func LeftoverNamespaces(prefix string) ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
