// Package alert is the rule engine that tells an operator, once, when
// something that matters happens: a new mesh-wide block, a member down, a
// node out of compliance (drift), a breached playbook expectation, a
// severe detection, a failing feed, a mesh without a Raft leader, or a
// metric of the node's registry past a threshold for a while.
//
// Rules are configuration (Config, under `alerts:` of the node's file).
// The Engine is pure: it holds no goroutine and reads no clock of its own
// (Options.Now); the node feeds it Events (Observe) and calls Evaluate on
// a ticker with its Prometheus registry. Both return the Notifications to
// deliver: one per (rule, group) when the group starts firing, again each
// repeat_after while it still fires, and one "resolved" when it clears.
// State is bounded (max_groups, evicting the group updated longest ago),
// each sink is rate limited, and every notification not delivered is
// counted under a named reason (Stats).
package alert
