package nft_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/nft"
)

// segNet is three hosts, each on its own link to a router namespace
// that forwards between them: office (10.61.1.2), server (10.61.2.2) and
// a management host (10.61.3.2).
type segNet struct {
	router, office, server, mgmt *netNS
}

const (
	officeIP = "10.61.1.2"
	serverIP = "10.61.2.2"
	mgmtIP   = "10.61.3.2"
)

func newSegNet(t *testing.T) *segNet {
	t.Helper()
	n := &segNet{router: newNS(t), office: newNS(t), server: newNS(t), mgmt: newNS(t)}
	run(t, "ip", "netns", "exec", n.router.name, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	for i, h := range []*netNS{n.office, n.server, n.mgmt} {
		id := uniq()
		vr, vh := "mwr"+id, "mwh"+id
		net := "10.61." + strconv.Itoa(i+1)
		run(t, "ip", "link", "add", vr, "netns", n.router.name, "type", "veth", "peer", "name", vh, "netns", h.name)
		run(t, "ip", "-n", n.router.name, "addr", "add", net+".1/24", "dev", vr)
		run(t, "ip", "-n", h.name, "addr", "add", net+".2/24", "dev", vh)
		run(t, "ip", "-n", n.router.name, "link", "set", vr, "up")
		run(t, "ip", "-n", h.name, "link", "set", vh, "up")
		run(t, "ip", "-n", h.name, "route", "add", "default", "via", net+".1")
	}
	return n
}

func port(t *testing.T, addr string) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

func counter(t *testing.T, f *nft.Firewall, chain, tag string) uint64 {
	t.Helper()
	cs, err := f.SegmentCounters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	found := false
	for _, c := range cs {
		if c.Chain == chain && c.Tag == tag {
			n += c.Packets
			found = true
		}
	}
	if !found {
		t.Fatalf("no rule %s in %s: %+v", tag, chain, cs)
	}
	return n
}

func mustNotDial(t *testing.T, from *netNS, addr, why string) {
	t.Helper()
	if err := dial(from, addr); err == nil {
		t.Fatalf("connection from %s to %s succeeded: %s", from.name, addr, why)
	}
}

// TestSegmentTraffic enforces a segmentation in the router between three
// hosts (forward chain) with real TCP: a deny flow stops a port while an
// allow flow still passes, an observe-mode deny passes and counts, a
// quarantined host reaches only the management host, and a rule deleted
// by hand is found by SegmentDrift and restored by a forced apply.
func TestSegmentTraffic(t *testing.T) {
	n := newSegNet(t)
	f := newFirewall(t, n.router, nft.WithTable("mw-seg"))
	ctx := t.Context()
	t.Cleanup(func() { f.Teardown(context.Background()) })

	web := listen(t, n.server, serverIP)
	db := listen(t, n.server, serverIP)
	ssh := listen(t, n.server, serverIP)
	atOffice := listen(t, n.office, officeIP)
	atMgmt := listen(t, n.mgmt, mgmtIP)
	// Before any segmentation everything passes.
	for _, c := range []struct {
		from *netNS
		to   string
	}{{n.office, web}, {n.office, db}, {n.office, ssh}, {n.mgmt, atOffice}, {n.office, atMgmt}, {n.server, atOffice}} {
		waitDial(t, c.from, c.to)
	}

	pfx := netip.MustParsePrefix
	one := func(p uint16) []intel.PortRange { return []intel.PortRange{{From: p, To: p}} }
	s := intel.Segmentation{
		Zones: []intel.Zone{
			{Name: "office", CIDRs: []netip.Prefix{pfx("10.61.1.0/24")}},
			{Name: "servers", CIDRs: []netip.Prefix{pfx("10.61.2.0/24")}},
			{Name: "mgmt", CIDRs: []netip.Prefix{pfx("10.61.3.0/24")}, Management: true},
		},
		Flows: []intel.Flow{
			{Name: "office-web", From: "office", To: "servers", Proto: intel.ProtoTCP, Ports: one(port(t, web)), Action: intel.FlowAllow, Priority: 10},
			{Name: "office-db", From: "office", To: "servers", Proto: intel.ProtoTCP, Ports: one(port(t, db)), Action: intel.FlowDeny, Mode: intel.FlowObserve, Priority: 10},
			{Name: "office-ssh", From: "office", To: "servers", Proto: intel.ProtoTCP, Ports: one(port(t, ssh)), Action: intel.FlowDeny, Priority: 10},
		},
	}
	now := time.Now()
	target := nft.SegmentTarget{Forward: true, Addrs: []netip.Addr{netip.MustParseAddr("10.61.1.1")}}
	apply := func(force bool) bool {
		t.Helper()
		p, err := nft.CompileSegmentation(s, target, now)
		if err != nil {
			t.Fatal(err)
		}
		sent, err := f.ApplySegmentation(ctx, p, force)
		if err != nil {
			t.Fatal(err)
		}
		if !sent {
			return false
		}
		drift, err := f.SegmentDrift(ctx, p)
		if err != nil || len(drift) > 0 {
			t.Fatalf("after apply: drift %v, %v", drift, err)
		}
		return true
	}
	if !apply(false) {
		t.Fatal("first apply sent nothing")
	}
	if apply(false) {
		t.Error("the same program was sent again")
	}

	// Deny stops, allow passes.
	mustNotDial(t, n.office, ssh, "flow office-ssh denies it")
	if err := dial(n.office, web); err != nil {
		t.Fatalf("office to web (allowed): %v", err)
	}
	if c := counter(t, f, "seg-forward", "flow:office-ssh"); c == 0 {
		t.Error("the deny flow counted nothing")
	}
	// Observe passes and counts.
	before := counter(t, f, "seg-forward", "flow:office-db")
	if err := dial(n.office, db); err != nil {
		t.Fatalf("office to db (observe mode): %v", err)
	}
	if after := counter(t, f, "seg-forward", "flow:office-db"); after <= before {
		t.Errorf("observe flow counter %d -> %d: want an increase", before, after)
	}

	// A rule deleted by hand: found, and put back.
	p, _ := nft.CompileSegmentation(s, target, now)
	deleteRule(t, n.router, "mw-seg", "seg-forward", "flow:office-ssh")
	drift, err := f.SegmentDrift(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(drift) != 1 || !strings.Contains(drift[0], "flow office-ssh") || !strings.Contains(drift[0], "missing") {
		t.Fatalf("drift %q: want the office-ssh rule missing", drift)
	}
	waitDial(t, n.office, ssh) // the hole is real
	if apply(false) {
		t.Error("an unchanged program was sent without force")
	}
	if !apply(true) {
		t.Fatal("forced apply sent nothing")
	}
	mustNotDial(t, n.office, ssh, "the repaired rule denies it")

	// A block comes first: the allowed flow does not admit a blocked
	// source.
	if err := f.Apply(ctx, []intel.Policy{block(t, officeIP, time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	mustNotDial(t, n.office, web, "the office host is blocked, whatever the flows allow")
	if err := f.Apply(ctx, nil, []intel.Indicator{ind(t, officeIP)}); err != nil {
		t.Fatal(err)
	}
	waitDial(t, n.office, web)

	// Quarantine the office host: it reaches only the management host,
	// and the management host reaches it.
	s.Quarantines = []intel.Quarantine{{Host: netip.MustParseAddr(officeIP), By: "op", Since: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)}}
	if !apply(false) {
		t.Fatal("quarantine not applied")
	}
	mustNotDial(t, n.office, web, "the office host is quarantined")
	mustNotDial(t, n.server, atOffice, "the office host is quarantined")
	if err := dial(n.office, atMgmt); err != nil {
		t.Errorf("quarantined host to management: %v", err)
	}
	if err := dial(n.mgmt, atOffice); err != nil {
		t.Errorf("management to quarantined host: %v", err)
	}
	if c := counter(t, f, "seg-forward", "quarantine:src"); c == 0 {
		t.Error("quarantine counted nothing")
	}
	// Released: the allowed flow passes again.
	s.Quarantines = nil
	apply(false)
	waitDial(t, n.office, web)
	// The block chains are untouched by segmentation.
	if _, err := f.Counters(ctx); err != nil {
		t.Fatal(err)
	}
}

// deleteRule deletes, as another process would, the first rule of chain
// whose tag is tag.
func deleteRule(t *testing.T, ns *netNS, table, chain, tag string) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	rules, err := c.GetRules(tb, &nftables.Chain{Name: chain, Table: tb})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if strings.HasSuffix(string(r.UserData), " "+tag) {
			if err := c.DelRule(r); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no rule tagged %s in %s", tag, chain)
}

// TestComplianceRepairsHandEdits runs continuous compliance over the
// blocks and the segmentation of one table in the destination host's
// namespace (input chain): a segmentation rule deleted by hand and a
// block element deleted by hand are detected, reported, repaired (the
// traffic is stopped again) and the time out of compliance recorded.
func TestComplianceRepairsHandEdits(t *testing.T) {
	p := newPair(t)
	f := newFirewall(t, p.b, nft.WithTable("mw-comp"))
	t.Cleanup(func() { f.Teardown(context.Background()) })
	ctx := t.Context()
	src := &source{}
	src.set(block(t, "192.0.2.7", time.Hour), block(t, "192.0.2.8", time.Hour))
	r := responders.NewReconciler(src, []responders.Backend{f}, responders.Options{})
	if err := r.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	web := listen(t, p.b, p.b4)
	waitDial(t, p.a, web)
	web6 := listen(t, p.b, p.b6)
	waitDial(t, p.a, web6) // the first IPv6 connection may wait for neighbour discovery

	pfx := netip.MustParsePrefix
	s := intel.Segmentation{
		Zones: []intel.Zone{
			{Name: "peer", CIDRs: []netip.Prefix{pfx("10.77.0.1/32"), pfx("fd00:77::1/128")}},
			{Name: "here", CIDRs: []netip.Prefix{pfx("10.77.0.2/32"), pfx("fd00:77::2/128")}, DefaultDeny: true},
		},
	}
	mesh := listen(t, p.b, p.b4) // the node's own listener
	waitDial(t, p.a, mesh)
	target := nft.SegmentTarget{Addrs: []netip.Addr{netip.MustParseAddr(p.b4)}, MeshPorts: []uint16{port(t, mesh)}}
	prog, err := nft.CompileSegmentation(s, target, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seg := nft.NewSegmentEnforcer(f)
	if _, err := seg.Set(ctx, prog); err != nil {
		t.Fatal(err)
	}
	mustNotDial(t, p.a, web, "the destination's zone denies by default")
	mustNotDial(t, p.a, web6, "the destination's zone denies by default (IPv6)")
	if err := dial(p.a, mesh); err != nil {
		t.Fatalf("the mesh port must pass the default deny: %v", err)
	}

	clk := &stepClock{t: time.Unix(1_800_000_000, 0)}
	var trans []responders.ComplianceTransition
	c := responders.NewCompliance([]responders.ComplianceCheck{r.BlockCheck(), seg}, responders.ComplianceOptions{
		Now: clk.Now, OnTransition: func(tr responders.ComplianceTransition) { trans = append(trans, tr) }})
	defer c.Close()
	if st, err := c.CheckOnce(ctx); err != nil || !st.Compliant || len(trans) != 0 {
		t.Fatalf("clean: %+v, %v", st, err)
	}

	// By hand: the default-deny rule goes, and a block element.
	deleteRule(t, p.b, "mw-comp", "seg-input", "default-deny:here")
	other, err := nftables.New(nftables.WithNetNSFd(p.b.fd))
	if err != nil {
		t.Fatal(err)
	}
	set := &nftables.Set{Table: &nftables.Table{Name: "mw-comp", Family: nftables.TableFamilyINet}, Name: "v4", KeyType: nftables.TypeIPAddr}
	if err := other.SetDeleteElements(set, []nftables.SetElement{{Key: netip.MustParseAddr("192.0.2.8").AsSlice()}}); err != nil {
		t.Fatal(err)
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	waitDial(t, p.a, web) // the hole is real

	st, err := c.CheckOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Compliant || len(trans) != 2 || trans[0].Compliant || !trans[1].Compliant {
		t.Fatalf("status %+v, transitions %+v: want out, repaired, back", st, trans)
	}
	reasons := strings.Join(trans[0].Reasons, "; ")
	for _, want := range []string{"segmentation: default-deny here: 1 of its rules missing from seg-input", "blocks: 1 blocks missing from nftables"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("reasons %q lack %q", reasons, want)
		}
	}
	if st.LastDrift == nil || st.LastDrift.Out <= 0 || st.LastDrift.Out != trans[1].At.Sub(trans[0].At) {
		t.Errorf("last drift %+v: want its length recorded", st.LastDrift)
	}
	mustNotDial(t, p.a, web, "the repaired default deny drops it")
	if ok, err := f.Holds(ctx, ind(t, "192.0.2.8")); err != nil || !ok {
		t.Errorf("block 192.0.2.8 not restored: %v %v", ok, err)
	}
}

// stepClock advances by one second on every reading.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}
