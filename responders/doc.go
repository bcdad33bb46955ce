// Package responders turns the desired enforcement state into effect.
//
// It owns the reconcile loop and the backends it drives. The loop is level
// triggered: on every pass it computes what must be blocked (Desired:
// active mesh policies and local decisions, minus anything an active allow
// policy or a protected range covers), asks each Backend what it holds,
// and applies the difference. A missed event, a restart or an entry
// removed behind Meshward's back is therefore healed by the next pass;
// nothing depends on seeing every change. The reconciler counts its work
// overall (Stats) and per backend (BackendStats), and reports each
// enforcement through Options.OnEnforced.
//
// Backends are small (Backend has three methods) and grow by optional
// interfaces (TypeFilter, Refresher). DryRun records what it would block
// and is the safe default. Each other backend is a subpackage named for
// what it wraps:
//
//   - nft: an nftables table of its own (sets with element timeouts,
//     counted drop rules in the input and forward hooks);
//   - dns: a DNS sinkhole (Unbound include file, RPZ zone) for domains;
//   - exec: an operator's command per added and removed block.
//
// Config is the "responders" section of the node's configuration
// (DefaultConfig, Validate). Each backend registers a factory under its
// name from init (Register; responders/all imports them all), and Build
// makes every backend the section enables, in the order of
// Config.Enabled. A new backend is one package, one registration and its
// field in Config; backendtest.Register swaps a factory for one test.
//
// Events for a SIEM or a SOAR are not backends: siem defines the Event
// type and its outputs (CEF over syslog, JSON lines), webhook delivers
// events to an HTTP receiver from a durable queue, and events holds the
// "events" section and builds the output from it. Nothing runs before
// Start(ctx): the Reconciler, siem.Output and webhook.Webhook each own
// their goroutine and Close waits for it.
//
// The conformance suite in responders/backendtest is run against every
// backend.
//
// The package must never decide what is malicious, never block an address
// that an active allow policy or a protected range covers, and never touch
// entries a backend did not create: a backend reports and removes only its
// own.
package responders
