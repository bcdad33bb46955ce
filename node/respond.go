package node

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
	_ "github.com/meshward/meshward/responders/all" // every backend kind
	"github.com/meshward/meshward/responders/events"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/responders/webhook"
	"github.com/meshward/meshward/store"
)

// newResponders makes the enabled enforcement backends through the
// registry (responders/all registers every kind).
func newResponders(r responders.Config, nftNetNS int, log *slog.Logger) (*Responders, error) {
	return responders.Build(r, responders.Deps{Logger: log, NetNS: nftNetNS})
}

// newEvents makes the SIEM and SOAR event output; nil when none is
// configured. Node.Start starts its delivery.
func newEvents(ev events.Config, site, version string, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*siem.Output, error) {
	out, err := events.Build(ev, events.Deps{Logger: log, Hostname: site, Version: version,
		WebhookQueue: func() (webhook.Queue, error) { return st.Queue("webhook") }})
	if err != nil || out == nil {
		return nil, err
	}
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
	for _, b := range r.List {
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
