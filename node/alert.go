package node

import (
	"context"
	"fmt"
	"time"

	"github.com/meshward/meshward/alert"
	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/responders/events"
	"github.com/meshward/meshward/responders/siem"
)

// alertSinks are the sinks of the events section an alerting rule may
// name.
func alertSinks(ev events.Config) []string {
	var out []string
	if ev.Webhook.URL != "" {
		out = append(out, alert.SinkWebhook)
	}
	if len(ev.Syslog) > 0 {
		out = append(out, alert.SinkSyslog)
	}
	if ev.JSONLines != "" {
		out = append(out, alert.SinkJSONLines)
	}
	return out
}

// alerting is the node's part of alerting: the engine, and the state of
// the conditions the node watches itself (member liveness, the Raft
// leader, the feeds), owned by alertLoop.
type alerting struct {
	engine *alert.Engine

	// Owned by alertLoop.
	down        map[string]bool      // members reported down
	rosterSince map[string]time.Time // when this loop first saw each member on the roster
	noLeader    time.Time            // since when no leader is known (zero: one is)
	leaderless  bool                 // reported
	failing     map[string]bool      // feeds reported failing
}

// newAlerting makes the node's alert engine from its configuration and
// registers its metrics.
func (n *Node) newAlerting() error {
	cfg := n.deps.Config
	e, err := alert.New(cfg.Alerts, alert.Options{Now: n.now, Sinks: alertSinks(cfg.Events)})
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	n.deps.Metrics.MustRegister(e.Collector())
	n.alerts = &alerting{engine: e, down: map[string]bool{}, rosterSince: map[string]time.Time{},
		failing: map[string]bool{}}
	return nil
}

// RaiseAlertEvent hands an event to the node's alerting rules, for the
// parts that watch conditions of their own: compliance raises Kind
// alert.KindDrift ("drift") with Key the node or object out of compliance
// and At the time it drifted, process measurement raises alert.KindBreach
// ("breach") with Key the breached expectation; each sends the same Kind
// and Key with Resolved set once the condition clears. Rules (alerts.rules
// with `on: drift` or `on: breach`) decide whether, to whom and how often
// the operator is told. It never blocks; an event no rule watches costs
// nothing.
func (n *Node) RaiseAlertEvent(ev alert.Event) {
	a := n.alerts
	if a == nil || !a.engine.Wants(ev.Kind) {
		return
	}
	if ev.Node == "" {
		ev.Node = n.deps.ID
	}
	if ev.Site == "" && !ev.Resolved {
		ev.Site = n.deps.Config.Site
	}
	n.deliverAlerts(a.engine.Observe(ev))
}

// alertOn turns an event the node emits into the alert event it stands
// for, if a rule watches it.
func (n *Node) alertOn(e siem.Event) {
	a := n.alerts
	if a == nil {
		return
	}
	var ev alert.Event
	switch e.Kind {
	case siem.KindPolicyCommitted:
		ev = alert.Event{Kind: alert.KindPolicyCommitted, Key: e.PolicyID, Action: e.Action, Indicator: e.Indicator,
			Detail: fmt.Sprintf("%s %s committed mesh-wide by %s: %s", e.Action, e.Indicator.Key(), e.Author, e.Reason)}
	case siem.KindPolicyExpired:
		ev = alert.Event{Kind: alert.KindPolicyCommitted, Key: e.PolicyID, Resolved: true}
	case siem.KindDetection:
		ev = alert.Event{Kind: alert.KindDetection, Key: e.Indicator.Key(), Severity: e.Severity, Indicator: e.Indicator,
			Detail: fmt.Sprintf("%s detected %s (%s, %d events)", e.Detector, e.Indicator.Key(), e.Technique, e.Count)}
	default:
		return
	}
	if !a.engine.Wants(ev.Kind) {
		return
	}
	ev.At, ev.Node, ev.Site = e.Time, n.deps.ID, n.deps.Config.Site
	n.deliverAlerts(a.engine.Observe(ev))
}

// deliverAlerts hands notifications to the event output as events of kind
// alert, each to its sinks.
func (n *Node) deliverAlerts(ns []alert.Notification) {
	for _, a := range ns {
		e := siem.Event{ID: siem.NewID(), Kind: siem.KindAlert, Time: a.At.UTC(), Node: n.deps.ID,
			Indicator: a.Indicator, Severity: a.Severity, Reason: a.Detail, Sinks: a.Sinks,
			Alert: &siem.AlertInfo{ID: a.ID, Rule: a.Rule, On: a.Kind, State: a.State, Group: a.Group,
				Since: a.Since.UTC(), Repeat: a.Repeat, Events: a.Events}}
		out := n.deps.Events
		if out == nil || !out.Emit(e) {
			n.alerts.engine.CountDrop(alert.DropQueueFull)
			n.log.Warn("alert not delivered: the event output refused it", "rule", a.Rule, "group", a.Group, "state", a.State)
		}
	}
}

// alertLoop evaluates, every alerts.eval_interval, the metric rules,
// reminders and quiet resolutions, and the conditions the node watches
// itself: roster members not heard from, no Raft leader, failing feeds.
func (n *Node) alertLoop(ctx context.Context) {
	a := n.alerts
	t := time.NewTicker(n.deps.Config.Alerts.EvalInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.watchLiveness(a)
		n.watchLeader(a)
		n.watchFeeds(a)
		ns, err := a.engine.Evaluate(n.deps.Metrics)
		if err != nil {
			n.log.Warn("alert metrics", "err", err)
		}
		n.deliverAlerts(ns)
	}
}

// watchLiveness reports a roster member down when no heartbeat of it has
// been received for alerts.node_down_after (counted from when this node
// started, or first saw it on the roster, if it never was), and up again
// when one is, or when it leaves the roster.
func (n *Node) watchLiveness(a *alerting) {
	if !a.engine.Wants(alert.KindNodeDown) || n.deps.Gossip == nil {
		return
	}
	now := n.now()
	after := n.deps.Config.Alerts.NodeDownAfter
	heard := map[string]time.Time{}
	for _, hb := range n.deps.Gossip.Heartbeats() {
		heard[hb.Node] = hb.Received
	}
	onRoster := map[string]bool{}
	for _, m := range n.deps.Consensus.Roster() {
		if m.ID == n.deps.ID {
			continue
		}
		onRoster[m.ID] = true
		if _, ok := a.rosterSince[m.ID]; !ok {
			a.rosterSince[m.ID] = now
		}
		last := a.rosterSince[m.ID]
		if h, ok := heard[m.ID]; ok && h.After(last) {
			last = h
		}
		switch quiet := now.Sub(last); {
		case quiet >= after && !a.down[m.ID]:
			a.down[m.ID] = true
			n.deliverAlerts(a.engine.Observe(alert.Event{Kind: alert.KindNodeDown, Key: m.ID, Node: m.ID, Site: m.Site,
				Severity: "high", At: now,
				Detail: fmt.Sprintf("member %s (site %s) not heard from for %s", shortID(m.ID), m.Site, quiet.Truncate(time.Second))}))
		case quiet < after && a.down[m.ID]:
			delete(a.down, m.ID)
			n.deliverAlerts(a.engine.Observe(alert.Event{Kind: alert.KindNodeDown, Key: m.ID, Resolved: true}))
		}
	}
	for id := range a.down {
		if !onRoster[id] { // removed, or left
			delete(a.down, id)
			n.deliverAlerts(a.engine.Observe(alert.Event{Kind: alert.KindNodeDown, Key: id, Resolved: true}))
		}
	}
	for id := range a.rosterSince {
		if !onRoster[id] {
			delete(a.rosterSince, id)
		}
	}
}

// watchLeader reports the mesh leaderless when this node, a Raft server
// (voter or standby; an edge follows certified entries and has no
// leader of its own), has known no leader for alerts.leaderless_after.
func (n *Node) watchLeader(a *alerting) {
	c := n.deps.Consensus
	if !a.engine.Wants(alert.KindLeaderless) || c.Kind() == consensus.KindEdge {
		return
	}
	now := n.now()
	if c.Leader() != "" {
		a.noLeader = time.Time{}
		if a.leaderless {
			a.leaderless = false
			n.deliverAlerts(a.engine.Observe(alert.Event{Kind: alert.KindLeaderless, Key: "raft", Resolved: true}))
		}
		return
	}
	if a.noLeader.IsZero() {
		a.noLeader = now
	}
	if quiet := now.Sub(a.noLeader); quiet >= n.deps.Config.Alerts.LeaderlessAfter && !a.leaderless {
		a.leaderless = true
		n.deliverAlerts(a.engine.Observe(alert.Event{Kind: alert.KindLeaderless, Key: "raft", Severity: "critical",
			At: a.noLeader, Node: n.deps.ID, Site: n.deps.Config.Site,
			Detail: fmt.Sprintf("no Raft leader known for %s", quiet.Truncate(time.Second))}))
	}
}

// watchFeeds reports a feed failing after alerts.feed_failures failed
// polls in a row, and resolves it at its next good poll (or when the feed
// is gone).
func (n *Node) watchFeeds(a *alerting) {
	f := n.feeds
	if !a.engine.Wants(alert.KindFeedFailing) || f == nil {
		return
	}
	seen := map[string]bool{}
	for _, st := range f.runner.Status() {
		name := st.Config.Name
		seen[name] = true
		switch {
		case st.Failures >= n.deps.Config.Alerts.FeedFailures && !a.failing[name]:
			a.failing[name] = true
			n.deliverAlerts(a.engine.Observe(alert.Event{Kind: alert.KindFeedFailing, Key: name, Severity: "medium",
				Node: n.deps.ID, Site: n.deps.Config.Site,
				Detail: fmt.Sprintf("feed %s failed %d polls in a row", name, st.Failures)}))
		case st.Failures == 0 && a.failing[name]:
			delete(a.failing, name)
			n.deliverAlerts(a.engine.Observe(alert.Event{Kind: alert.KindFeedFailing, Key: name, Resolved: true}))
		}
	}
	for name := range a.failing {
		if !seen[name] {
			delete(a.failing, name)
			n.deliverAlerts(a.engine.Observe(alert.Event{Kind: alert.KindFeedFailing, Key: name, Resolved: true}))
		}
	}
}
