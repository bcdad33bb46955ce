package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/dns"
	rexec "github.com/meshward/meshward/responders/exec"
	"github.com/meshward/meshward/responders/nft"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/responders/webhook"
	"github.com/meshward/meshward/store"
)

// The kernel firewall's elements carry their own timeouts.
var _ responders.Refresher = (*nft.Firewall)(nil)

// newResponders makes the enabled enforcement backends.
func newResponders(r RespondersConfig, nftNetNS int, log *slog.Logger) (*Responders, error) {
	out := &Responders{}
	if r.DryRun {
		out.DryRun = responders.NewDryRun(log.With("part", "dry-run"))
		out.Backends = append(out.Backends, out.DryRun)
	}
	fail := func(err error) (*Responders, error) {
		if out.Firewall != nil {
			_ = out.Firewall.Close()
		}
		return nil, err
	}
	if r.Nftables.Enabled {
		opts := []nft.Option{nft.WithTable(r.Nftables.Table)}
		if nftNetNS > 0 {
			opts = append(opts, nft.WithNetNS(nftNetNS))
		}
		fw, err := nft.New(opts...)
		if err != nil {
			return fail(fmt.Errorf("responders.nftables: %w", err))
		}
		out.Firewall = fw
		out.Backends = append(out.Backends, fw)
	}
	if d := r.DNS; d.Enabled {
		sink, err := dns.New(dns.Config{UnboundPath: d.UnboundPath, RPZPath: d.RPZPath, RPZOrigin: d.RPZOrigin,
			Reload: d.Reload, ReloadTimeout: d.ReloadTimeout})
		if err != nil {
			return fail(fmt.Errorf("responders.dns: %w", err))
		}
		out.Backends = append(out.Backends, sink)
	}
	for i, e := range r.Exec {
		c, err := rexec.New(rexec.Config{Name: e.Name, Add: e.Add, Remove: e.Remove, Types: e.Types,
			Timeout: e.Timeout, StatePath: e.StatePath})
		if err != nil {
			return fail(fmt.Errorf("responders.exec[%d]: %w", i, err))
		}
		out.Backends = append(out.Backends, c)
	}
	return out, nil
}

// newEvents makes the SIEM and SOAR event output; nil when none is
// configured. Node.Start starts its delivery.
func newEvents(ev EventsConfig, site, version string, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*siem.Output, error) {
	var sinks []siem.Sink
	closeAll := func() {
		for _, s := range sinks {
			_ = s.Close()
		}
	}
	for i, s := range ev.Syslog {
		sl, err := siem.NewSyslog(siem.SyslogConfig{Network: s.Network, Address: s.Address, Facility: s.Facility,
			Hostname: site, Version: version})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("events.syslog[%d]: %w", i, err)
		}
		sinks = append(sinks, sl)
	}
	if ev.JSONLines != "" {
		j, err := siem.NewJSONLines(ev.JSONLines)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("events.json_lines: %w", err)
		}
		sinks = append(sinks, j)
	}
	if w := ev.Webhook; w.URL != "" {
		secret, err := os.ReadFile(w.SecretFile)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("events.webhook.secret_file: %w", err)
		}
		q, err := st.Queue("webhook")
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("events.webhook: %w", err)
		}
		wh, err := webhook.New(webhook.Config{URL: w.URL, Secret: bytes.TrimSpace(secret), Timeout: w.Timeout,
			MinBackoff: w.MinBackoff, MaxBackoff: w.MaxBackoff, Logger: log.With("part", "webhook")}, q)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("events.webhook: %w", err)
		}
		sinks = append(sinks, wh)
	}
	if len(sinks) == 0 {
		return nil, nil
	}
	out := siem.New(sinks, ev.QueueSize, log.With("part", "events"))
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshward_events_dropped_total",
			Help: "SIEM/SOAR events dropped because the output queue was full."},
			func() float64 { return float64(out.Stats().Dropped) }),
	)
	return out, nil
}

// emit hands an event to the SIEM and SOAR output, if any.
func (n *Node) emit(e siem.Event) {
	if ev := n.deps.Events; ev != nil {
		ev.Emit(e)
	}
}

// watchPolicies reports mesh-wide policies as they are committed and as
// they expire or are revoked, by comparing the active set on every
// consensus change and every few seconds (expiry needs no change).
func (n *Node) watchPolicies(active map[string]intel.Policy) map[string]intel.Policy {
	now := n.now()
	next := make(map[string]intel.Policy)
	for _, p := range n.deps.Consensus.Policies(now) {
		next[p.ID] = p
		if _, ok := active[p.ID]; !ok {
			if p.Action == intel.ActionBlock {
				n.timelines.mark(p.Indicator.Key(), now, committed)
			}
			n.emit(siem.PolicyEvent(siem.KindPolicyCommitted, n.deps.ID, p, "", now))
		}
	}
	for id, p := range active {
		if _, ok := next[id]; !ok {
			n.emit(siem.PolicyEvent(siem.KindPolicyExpired, n.deps.ID, p, "", now))
		}
	}
	return next
}

// Enforcing reports whether any of this node's responders holds a block
// of ind.
func (n *Node) Enforcing(ind intel.Indicator) bool {
	r := n.responders()
	if r.DryRun != nil {
		return r.DryRun.Has(ind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, b := range r.Backends {
		if f, ok := b.(responders.TypeFilter); ok && !f.Supports(ind.Type) {
			continue
		}
		if held, err := b.Current(ctx); err == nil {
			if _, ok := held[ind.Key()]; ok {
				return true
			}
		}
	}
	return false
}
