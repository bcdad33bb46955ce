package consensus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// Automatic quarantine (CmdQuarantine): a zone may name detection rules
// whose sightings of one of its hosts quarantine that host without an
// operator (intel.AutoQuarantine, set with the zone by an admin's
// set_zone). Any member may propose one; the entry carries the host, the
// TTL asked for and the signed sightings (the exact bytes signed), and
// the FSM checks from the entry and its state alone:
//
//   - the host is in a zone (not_in_zone) that allows automatic
//     quarantine (no_auto_quarantine);
//   - every proof opens (bad_signature, proof_malformed), is a full
//     sighting (proof_kind, proof_partial) of the host
//     (proof_wrong_indicator), signed by a roster member
//     (proof_not_member), sent within the corroboration window before the
//     entry's time (proof_stale), not claiming a sighting after it was
//     sent (proof_time), and after the host's last release
//     (proof_before_release: a release is not undone by the sightings
//     that caused the quarantine);
//   - one zone holding the host, the first by name, lists the proofs'
//     rule (rule_not_allowed), and at least its MinNodes distinct members
//     signed sightings by one of its rules (min_nodes);
//   - the TTL is 1s to the zone's MaxTTL (ttl_cap);
//   - the host is no member's address, in no protected range, and not a
//     loopback, link-local, multicast or unspecified address (the
//     reasons of an operator's quarantine), and the bound on quarantines
//     holds.
//
// A quarantine in force that lasts longer (or until released) is kept;
// a shorter one is extended. Since is the FSM's now (the entry's time),
// ExpiresAt Since plus the TTL. Refusals are counted under command
// "quarantine".

// CmdQuarantine is an automatic quarantine proven by signed sightings
// (Command.Quarantine + Command.Proofs). Part of the log format.
const CmdQuarantine CommandType = 12

// QuarantineRequest is what an automatic quarantine asks for.
type QuarantineRequest struct {
	Host       netip.Addr `json:"host"`
	TTLSeconds int64      `json:"ttl_seconds"`
}

// TTL is TTLSeconds as a duration.
func (r QuarantineRequest) TTL() time.Duration { return time.Duration(r.TTLSeconds) * time.Second }

// validateQuarantine is Command.validate for CmdQuarantine.
func (c *Command) validateQuarantine() *RefusalError {
	q := c.Quarantine
	if q == nil {
		return refuse(c.Type, "malformed", ErrInvalidCommand, "quarantine without its request")
	}
	if err := (intel.Quarantine{Host: q.Host}).Validate(); err != nil {
		return refuse(c.Type, "malformed", ErrInvalidCommand, "%v", err)
	}
	if q.TTLSeconds < 1 || q.TTL() > intel.MaxQuarantineTTL {
		return refuse(c.Type, "ttl_cap", ErrRefused, "an automatic quarantine lasts 1s to %s, not %ds", intel.MaxQuarantineTTL, q.TTLSeconds)
	}
	if len(c.Proofs) == 0 {
		return refuse(c.Type, "no_proof", ErrRefused, "an automatic quarantine of %s carries no signed sightings", q.Host)
	}
	if len(c.Proofs) > maxProofs {
		return refuse(c.Type, "too_many_proofs", ErrInvalidCommand, "%d proofs, limit %d", len(c.Proofs), maxProofs)
	}
	for i, p := range c.Proofs {
		if len(p) > intel.MaxEnvelopeSize {
			return refuse(c.Type, "proof_malformed", ErrInvalidCommand, "proof %d is %d bytes, limit %d", i, len(p), intel.MaxEnvelopeSize)
		}
	}
	return nil
}

// quarantineAuto checks an automatic quarantine (see above).
func (f *fsm) quarantineAuto(c *Command, now time.Time) (func(), *RefusalError) {
	const t = CmdQuarantine
	req := *c.Quarantine
	host := req.Host
	s := &f.seg
	var zones []intel.Zone // holding host, with automatic quarantine, by name
	inZone := false
	for _, n := range slices.Sorted(maps.Keys(s.zones)) {
		if z := s.zones[n]; z.Contains(host) {
			inZone = true
			if z.AutoQuarantine != nil {
				zones = append(zones, z)
			}
		}
	}
	if !inZone {
		return nil, refuse(t, "not_in_zone", ErrRefused, "%s is in no zone: only a zone's hosts are quarantined automatically", host)
	}
	if len(zones) == 0 {
		return nil, refuse(t, "no_auto_quarantine", ErrRefused, "no zone holding %s allows automatic quarantine", host)
	}
	key := intel.IndicatorFromAddr(host).Key()
	from, to := now.Add(-f.rules.Window), now.Add(signedSkew)
	released := s.released[host]
	type proven struct{ origin, rule string }
	var sightings []proven
	for i, raw := range c.Proofs {
		env, err := f.verify.Open(raw)
		if err != nil {
			if errors.Is(err, intel.ErrBadSignature) {
				return nil, refuse(t, "bad_signature", ErrRefused, "proof %d: %v", i, err)
			}
			return nil, refuse(t, "proof_malformed", ErrRefused, "proof %d: %v", i, err)
		}
		if env.Kind != intel.KindSighting {
			return nil, refuse(t, "proof_kind", ErrRefused, "proof %d carries a %s, not a sighting", i, env.Kind)
		}
		sg, err := intel.DecodeSighting(env)
		if err != nil {
			return nil, refuse(t, "proof_malformed", ErrRefused, "proof %d: %v", i, err)
		}
		if sg.Partial {
			return nil, refuse(t, "proof_partial", ErrRefused, "proof %d is a partial sighting, not a detection", i)
		}
		if sg.Indicator.Key() != key {
			return nil, refuse(t, "proof_wrong_indicator", ErrRefused, "proof %d names %s, the quarantine names %s", i, sg.Indicator.Key(), host)
		}
		origin := env.OriginID()
		if _, ok := f.roster[origin]; !ok {
			return nil, refuse(t, "proof_not_member", ErrRefused, "proof %d is signed by %s, not a member", i, shortID(origin))
		}
		if env.Time.Before(from) || env.Time.After(to) {
			return nil, refuse(t, "proof_stale", ErrRefused, "proof %d was sent at %s, outside the window [%s, %s]",
				i, env.Time.Format(time.RFC3339), from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		if sg.LastSeen.After(env.Time.Add(signedSkew)) {
			return nil, refuse(t, "proof_time", ErrRefused, "proof %d claims a sighting at %s, after it was sent at %s",
				i, sg.LastSeen.Format(time.RFC3339), env.Time.Format(time.RFC3339))
		}
		if !released.IsZero() && !env.Time.After(released) {
			return nil, refuse(t, "proof_before_release", ErrRefused, "proof %d was sent at %s, before %s was released at %s",
				i, env.Time.Format(time.RFC3339), host, released.Format(time.RFC3339))
		}
		sightings = append(sightings, proven{origin, sg.Detector})
	}
	// The first zone by name that lists a proof's rule decides.
	var zone intel.Zone
	found := false
	for _, z := range zones {
		if slices.ContainsFunc(sightings, func(p proven) bool { return z.AutoQuarantine.Allows(p.rule) }) {
			zone, found = z, true
			break
		}
	}
	if !found {
		return nil, refuse(t, "rule_not_allowed", ErrRefused, "no zone holding %s lets rule %s quarantine it", host, sightings[0].rule)
	}
	aq := *zone.AutoQuarantine
	signers := map[string]bool{}
	var rules []string
	for _, p := range sightings {
		if aq.Allows(p.rule) {
			signers[p.origin] = true
			if !slices.Contains(rules, p.rule) {
				rules = append(rules, p.rule)
			}
		}
	}
	if len(signers) < aq.Nodes() {
		return nil, refuse(t, "min_nodes", ErrRefused, "zone %s needs sightings of %s by %d members, %d signed", zone.Name, host, aq.Nodes(), len(signers))
	}
	if req.TTL() > aq.MaxTTL() {
		return nil, refuse(t, "ttl_cap", ErrRefused, "zone %s quarantines automatically for at most %s, not %s", zone.Name, aq.MaxTTL(), req.TTL())
	}
	slices.Sort(rules)
	q := intel.Quarantine{Host: host, Reason: fmt.Sprintf("rule %s seen by %d member(s)", rules[0], len(signers)),
		By: "auto:" + rules[0], Rule: rules[0], Since: now, ExpiresAt: now.Add(req.TTL())}
	if old, ok := s.quarantines[host]; ok && old.Active(now) && (old.ExpiresAt.IsZero() || !old.ExpiresAt.Before(q.ExpiresAt)) {
		// The quarantine in force lasts as long or longer: kept.
		if rerr := f.quarantineFloor(t, host); rerr != nil {
			return nil, rerr
		}
		return func() {}, nil
	}
	return f.setQuarantine(t, q, now)
}

// --- reading and proposing ---------------------------------------------------

// AutoQuarantine returns the zone that lets rule quarantine host
// automatically (the first by name holding host that lists rule), with
// its rule, and whether there is one. A proposer asks it before it
// proposes.
func (c *Consensus) AutoQuarantine(host netip.Addr, rule string) (string, intel.AutoQuarantine, bool) {
	host = host.Unmap()
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	s := c.fsm.seg
	for _, n := range slices.Sorted(maps.Keys(s.zones)) {
		if z := s.zones[n]; z.Contains(host) && z.AutoQuarantine != nil && z.AutoQuarantine.Allows(rule) {
			a := *z.AutoQuarantine
			a.Rules = slices.Clone(a.Rules)
			return n, a, true
		}
	}
	return "", intel.AutoQuarantine{}, false
}

// Quarantined returns host's quarantine in force at now.
func (c *Consensus) Quarantined(host netip.Addr, now time.Time) (intel.Quarantine, bool) {
	host = host.Unmap()
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	q, ok := c.fsm.seg.quarantines[host]
	return q, ok && q.Active(now)
}

// ProposeQuarantine commits an automatic quarantine of host for ttl,
// proven by proofs (signed sighting envelopes, the exact bytes), from any
// node. As with Propose, cancelling ctx stops the wait, not the commit.
func (c *Consensus) ProposeQuarantine(ctx context.Context, host netip.Addr, ttl time.Duration, proofs [][]byte) error {
	return c.Propose(ctx, Command{Type: CmdQuarantine, Quarantine: &QuarantineRequest{Host: host.Unmap(), TTLSeconds: int64(ttl / time.Second)}, Proofs: proofs})
}
