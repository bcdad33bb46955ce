// Package responders turns the desired enforcement state into effect.
//
// It owns the reconcile loop and the backends it drives. What must be
// blocked is the active block policies of the mesh and the node's local
// decisions, minus anything an active allow policy or a protected range
// covers, or a safety floor refuses (Desired computes it from lists). The
// Reconciler keeps that desired state itself, indexed by indicator, with
// the held policies' expiries in a heap, and works on changes: a pass
// takes in the source's changes since the last one (a ChangeFeed: the
// consensus change log, read whole in pages only when it cannot
// continue), recomputes the indicators they touch, and hands each backend
// just the entries added and removed. Its cost is what changed, not what
// the mesh holds.
//
// The full pass, every Options.Interval, is the safety net: it compares
// the desired state with what each backend holds and applies the
// difference, so that an entry removed behind Meshward's back, a restart
// or a failed change is healed. A backend whose change failed is compared
// in full at the next pass. A Comparer backend (nft) compares from its own
// record of what it holds, first by a digest of the keys (Digest), kept
// change by change on both sides. The reconciler counts its work overall
// (Stats) and per backend (BackendStats), and reports each enforcement
// through Options.OnEnforced.
//
// Backends are small (Backend has three methods) and grow by optional
// interfaces (TypeFilter, Refresher, Comparer, Holder). DryRun records
// what it would block and is the safe default. Each other backend is a subpackage named for
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
// Continuous compliance (compliance.go): a Compliance runs
// ComplianceChecks — the Reconciler's BlockCheck, the nftables
// segmentation's — every interval and on Trigger; a drift is reported
// (out since T, with reasons), repaired, checked again, and the time out
// recorded in the transition that ends it.
//
// The conformance suite in responders/backendtest is run against every
// backend.
//
// The package must never decide what is malicious, never block an address
// that an active allow policy or a protected range covers, and never touch
// entries a backend did not create: a backend reports and removes only its
// own.
package responders
