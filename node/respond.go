package node

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus"
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

// emit hands an event to the alerting rules and to the SIEM and SOAR
// output, if any.
func (n *Node) emit(e siem.Event) {
	n.alertOn(e) // alert.go
	if ev := n.deps.Events; ev != nil {
		ev.Emit(e)
	}
	n.publishLive(e) // the dashboard's event stream (admin_events.go)
}

// policyWatch is what watchPolicies knows of the mesh-wide policies: the
// position in the consensus change feed, the IDs of the active policies
// it has reported committed (idSet: 8 bytes a slot, about 16 bytes a
// policy), and how far its clock has read the policies' expiries. The
// expiries stay in the consensus state, which holds a policy until the
// FSM's clock passes it and finds the policies expiring in a window of
// time in O(log n) (ExpiringPolicies); the policy an event needs is in
// the change being read, or comes with its expiry. A million active
// policies cost some 16 MB here, where a map of expiries and a heap of
// its own cost 49.
type policyWatch struct {
	since   uint64
	active  *idSet // policy IDs as the numbers their hex digits spell
	expiry  consensus.ExpiryCursor
	started bool
}

// keyOf reads a policy ID: 16 lower-case hex digits.
func keyOf(id string) (uint64, bool) {
	if len(id) != 16 {
		return 0, false
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], []byte(id)); err != nil || strings.ToLower(id) != id {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[:]), true
}

// idString is the policy ID k stands for.
func idString(k uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], k)
	return hex.EncodeToString(b[:])
}

// Feed read sizes of watchPolicies.
const (
	watchChangeBatch = 1000
	watchPageSize    = 10_000
)

// watchPolicies reports mesh-wide policies as they are committed and as
// they expire or are revoked. It follows the consensus change feed from
// w's position, so that a call costs what changed since the last, and
// reads the policies whole (in pages) only when the feed cannot continue
// (at start, after a restored snapshot, or when this loop fell behind).
// Expiry needs no change: every call (on each change and every few
// seconds) reads the policies whose expiry has passed by the node's
// clock since the last call, and reports those it had reported
// committed; the consensus state still holds them, as its own clock is
// only moved by the next command.
func (n *Node) watchPolicies(w *policyWatch) {
	now := n.now()
	if !w.started {
		w.active = newIDSet()
		w.expiry = consensus.ExpiryCursorAfter(now)
		w.started = true
	}
	c := n.deps.Consensus
	for {
		changes, next, ok := c.PolicyChanges(w.since, watchChangeBatch)
		if !ok {
			// Continue from next once the pages are read: a change they
			// already show is then taken in twice, which reports nothing.
			w.since = next
			n.resyncWatch(w, now)
			break
		}
		for _, ch := range changes {
			if ch.Removed {
				n.watchGone(w, ch.Policy, now)
			} else {
				n.watchPut(w, ch.Policy, now)
			}
		}
		w.since = next
		if len(changes) < watchChangeBatch {
			break
		}
	}
	// The expiries passed since the last call. A policy extended since
	// is found at its new expiry only; one revoked is no longer held,
	// and its removal is in the feed.
	for {
		page, next := c.ExpiringPolicies(w.expiry, now, watchPageSize)
		for _, p := range page {
			n.watchGone(w, p, now)
		}
		w.expiry = next
		if len(page) < watchPageSize {
			break
		}
	}
	if next := consensus.ExpiryCursorAfter(now); w.expiry.Before(next) {
		w.expiry = next
	}
}

// resyncWatch compares what w holds with the active policies read whole.
func (n *Node) resyncWatch(w *policyWatch, now time.Time) {
	seen := newIDSet()
	after := ""
	for {
		page, next := n.deps.Consensus.PolicyPage(after, watchPageSize, now)
		for _, p := range page {
			if k, ok := keyOf(p.ID); ok {
				seen.Add(k)
			}
			n.watchPut(w, p, now)
		}
		if next == "" || len(page) == 0 {
			break
		}
		after = next
	}
	var gone []uint64 // the set must not change while it is walked
	for k := range w.active.All() {
		if !seen.Has(k) {
			gone = append(gone, k)
		}
	}
	for _, k := range gone {
		// Gone while the feed was lost: only its ID is known.
		w.active.Remove(k)
		n.emit(siem.PolicyEvent(siem.KindPolicyExpired, n.deps.ID, intel.Policy{ID: idString(k)}, "", now))
	}
}

// watchPut takes in a committed (or changed) policy, reporting it if it
// is new and active.
func (n *Node) watchPut(w *policyWatch, p intel.Policy, now time.Time) {
	if !p.Active(now) {
		n.watchGone(w, p, now)
		return
	}
	k, ok := keyOf(p.ID)
	if !ok {
		n.log.Warn("policy with a malformed ID not watched", "id", p.ID)
		return
	}
	if !w.active.Add(k) {
		return // known
	}
	if p.Action == intel.ActionBlock {
		n.timelines.mark(p.Indicator.Key(), now, committed)
	}
	p.Evidence = nil // events do not carry it
	n.emit(siem.PolicyEvent(siem.KindPolicyCommitted, n.deps.ID, p, "", now))
}

// watchGone reports p expired (or revoked), if it was active.
func (n *Node) watchGone(w *policyWatch, p intel.Policy, now time.Time) {
	k, ok := keyOf(p.ID)
	if !ok {
		return
	}
	if !w.active.Remove(k) {
		return
	}
	p.Evidence = nil
	n.emit(siem.PolicyEvent(siem.KindPolicyExpired, n.deps.ID, p, "", now))
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
		if h, ok := b.(responders.Holder); ok {
			if held, err := h.Holds(ctx, ind); err == nil && held {
				return true
			}
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
