package node

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/multiformats/go-multiaddr"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/nft"
)

// Segmentation on this node: the mesh's zones, flows and quarantines
// (held in the FSM, read through the consensus accessor) filtered to
// this site, compiled for this host (nft.CompileSegmentation) and
// enforced in the nftables backend's table when the node enforces with
// nftables; otherwise (dry run) compiled and reported, never applied.
//
// A zone whose Sites list does not name this node's site is left out, so
// that the flows naming it match nothing here. The input chain carries
// the flows into zones holding one of the host's interface addresses
// (all flows when the backend works in another network namespace, whose
// addresses the node does not list); the forward chain is compiled when
// the host forwards IPv4 or IPv6 (or always, in another namespace). The
// node's own libp2p listening ports and its admin TCP port are accepted
// first in the input chain (nft package documentation).

// segmentSource is what the segmentation part needs of consensus.
type segmentSource interface {
	Segmentation(now time.Time) intel.Segmentation
	SegmentationChanged() <-chan struct{}
}

// segmentResync is how often the segmentation is compiled again without
// a change (interface addresses, ports).
const segmentResync = time.Minute

// SegmentStatus is what the node enforces of the segmentation.
type SegmentStatus = admin.SegmentationStatus

// segmentPart compiles and applies the segmentation.
type segmentPart struct {
	n   *Node
	src segmentSource

	counts struct {
		applies, unchanged, compileErrors, applyErrors, scrapeErrors atomic.Uint64
	}

	mu       sync.Mutex
	fw       *nft.Firewall // the backend the enforcer works on
	enforcer *nft.SegmentEnforcer
	status   SegmentStatus
}

func newSegmentPart(n *Node) *segmentPart {
	p := &segmentPart{n: n}
	if src, ok := any(n.deps.Consensus).(segmentSource); ok {
		p.src = src
	}
	n.deps.Metrics.MustRegister(p.collectors()...)
	return p
}

// firewall returns the nftables backend in force, if any.
func (p *segmentPart) firewall() *nft.Firewall {
	rs := p.n.responders()
	if rs == nil {
		return nil
	}
	for _, b := range rs.List {
		if fw, ok := b.(*nft.Firewall); ok {
			return fw
		}
	}
	return nil
}

// check is the compliance check of the segmentation in force (nil in
// dry run).
func (p *segmentPart) check() *nft.SegmentEnforcer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enforcer
}

// Status returns what the node enforces of the segmentation.
func (p *segmentPart) Status() SegmentStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// run compiles and applies the segmentation at start, at every change,
// at the next quarantine expiry and every segmentResync.
func (p *segmentPart) run(ctx context.Context) {
	if p.src == nil {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		changed := p.src.SegmentationChanged()
		next := p.sync(ctx)
		wait := segmentResync
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(p.n.now()), time.Millisecond))
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
	}
}

// sync compiles the segmentation and applies it where the node
// enforces; it returns when to compile again at the latest.
func (p *segmentPart) sync(ctx context.Context) time.Time {
	now := p.n.now()
	fw := p.firewall()
	s := siteSegmentation(p.src.Segmentation(now), p.n.deps.Config.Site)
	prog, err := nft.CompileSegmentation(s, p.target(fw != nil && p.n.deps.Options.NftablesNetNS > 0), now)
	p.mu.Lock()
	st := &p.status
	if err != nil {
		st.Error = err.Error()
		p.mu.Unlock()
		p.counts.compileErrors.Add(1)
		p.n.log.Error("compile segmentation", "err", err)
		return time.Time{}
	}
	st.Hash, st.Zones, st.Flows, st.Quarantined = prog.Hash, len(s.Zones), prog.Flows, prog.Quarantined
	st.InputRules, st.ForwardRules, st.CompiledAt, st.Error = len(prog.Input), len(prog.Forward), now, ""
	st.Enforced = fw != nil
	if fw != p.fw { // enforcement turned on or off, or the backend replaced (reload)
		p.fw, p.enforcer = fw, nil
		if fw != nil {
			p.enforcer = nft.NewSegmentEnforcer(fw)
		}
	}
	enf := p.enforcer
	p.mu.Unlock()
	if enf == nil {
		p.n.log.Debug("segmentation compiled (dry run)", "hash", prog.Hash, "rules", len(prog.Input)+len(prog.Forward))
		return prog.NextChange
	}
	sent, err := enf.Set(ctx, prog)
	p.mu.Lock()
	if err != nil {
		p.status.Error = err.Error()
	} else if sent {
		p.status.AppliedAt = p.n.now()
	}
	p.mu.Unlock()
	switch {
	case err != nil:
		p.counts.applyErrors.Add(1)
	case sent:
		p.counts.applies.Add(1)
	default:
		p.counts.unchanged.Add(1)
	}
	if err != nil {
		p.n.log.Error("apply segmentation", "err", err)
	} else if sent {
		p.n.log.Info("segmentation applied", "hash", prog.Hash, "flows", prog.Flows, "quarantined", prog.Quarantined)
	}
	if c := p.n.compliance; c != nil {
		c.c.Trigger() // compare what was applied with the kernel
	}
	return prog.NextChange
}

// siteSegmentation leaves out the zones limited to other sites.
func siteSegmentation(s intel.Segmentation, site string) intel.Segmentation {
	s.Zones = slices.DeleteFunc(slices.Clone(s.Zones), func(z intel.Zone) bool {
		return len(z.Sites) > 0 && !slices.Contains(z.Sites, site)
	})
	return s
}

// target describes this host to the compiler. elsewhere: the backend
// works in another network namespace, whose addresses and forwarding
// the node does not read.
func (p *segmentPart) target(elsewhere bool) nft.SegmentTarget {
	t := nft.SegmentTarget{MeshPorts: p.meshPorts(), Forward: true}
	if elsewhere {
		return t
	}
	t.Addrs = hostAddrs()
	t.Forward = forwarding()
	return t
}

// meshPorts are the node's libp2p listening ports and its admin TCP
// port.
func (p *segmentPart) meshPorts() []uint16 {
	var out []uint16
	if h := p.n.deps.Host; h != nil {
		for _, a := range h.Addrs() {
			for _, proto := range []int{multiaddr.P_TCP, multiaddr.P_UDP} {
				if v, err := a.ValueForProtocol(proto); err == nil {
					if port, err := strconv.ParseUint(v, 10, 16); err == nil && port > 0 {
						out = append(out, uint16(port))
					}
				}
			}
		}
	}
	if l := p.n.deps.Config.Admin.Listen; l != "" {
		if _, v, err := net.SplitHostPort(l); err == nil {
			if port, err := strconv.ParseUint(v, 10, 16); err == nil && port > 0 {
				out = append(out, uint16(port))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// hostAddrs are the host's interface addresses; nil (compile every
// flow into the input chain) when they cannot be listed.
func hostAddrs() []netip.Addr {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range as {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, pfx.Addr().Unmap())
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// forwarding reports whether the host routes IPv4 or IPv6 (true when it
// cannot tell: an unused forward chain costs nothing).
func forwarding() bool {
	known := false
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		known = true
		if strings.TrimSpace(string(b)) == "1" {
			return true
		}
	}
	return !known
}
