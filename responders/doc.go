// Package responders turns the desired enforcement state into effect.
//
// It owns the reconcile loop and the backends it drives. The loop is level
// triggered: on every pass it computes what must be blocked (Desired:
// active mesh policies and local decisions, minus anything an active allow
// policy or a protected range covers), asks each Backend what it holds,
// and applies the difference. A missed event, a restart or an entry
// removed behind Meshward's back is therefore healed by the next pass;
// nothing depends on seeing every change.
//
// Backends are small (Backend has three methods) and grow by optional
// interfaces (TypeFilter). DryRun records what it would block and is the
// safe default. The conformance suite in responders/backendtest is run
// against every backend.
//
// The package must never decide what is malicious, never block an address
// that an active allow policy or a protected range covers, and never touch
// entries a backend did not create: a backend reports and removes only its
// own.
package responders
