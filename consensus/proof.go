package consensus

import (
	"errors"
	"time"

	"github.com/meshward/meshward/intel"
)

// verifyProofs checks the signed sighting envelopes that justify an
// automatic block of ind at now, and returns the evidence they make. Every
// proof must open (signature), carry a valid sighting of ind, be signed by
// a member on the roster at this index, be sent within [now-W, now+skew]
// and not claim a last sighting after it was sent (plus skew); together
// they must come from at least MinNodes distinct members (two proofs from
// one key count once). The first bad proof refuses the whole command, with
// its reason. The sightings opened are returned with their signers, for
// the MinRisk check. Caller holds the lock.
func (f *fsm) verifyProofs(ind intel.Indicator, proofs [][]byte, now time.Time) ([]intel.Evidence, []provenSighting, *RefusalError) {
	const t = CmdPutPolicy
	if len(proofs) == 0 {
		return nil, nil, refuse(t, "no_proof", ErrRefused, "an automatic block of %s carries no signed sightings", ind)
	}
	if len(proofs) > maxProofs {
		return nil, nil, refuse(t, "too_many_proofs", ErrInvalidCommand, "%d proofs, limit %d", len(proofs), maxProofs)
	}
	key := ind.Key()
	from, to := now.Add(-f.rules.Window), now.Add(signedSkew)
	signers := make(map[string]bool, len(proofs))
	evidence := make([]intel.Evidence, 0, len(proofs))
	proven := make([]provenSighting, 0, len(proofs))
	var dist distributedTally // partial sightings (proof_distributed.go)
	for i, raw := range proofs {
		env, err := f.verify.Open(raw)
		if err != nil {
			if errors.Is(err, intel.ErrBadSignature) {
				return nil, nil, refuse(t, "bad_signature", ErrRefused, "proof %d: %v", i, err)
			}
			return nil, nil, refuse(t, "proof_malformed", ErrRefused, "proof %d: %v", i, err)
		}
		if env.Kind != intel.KindSighting {
			return nil, nil, refuse(t, "proof_kind", ErrRefused, "proof %d carries a %s, not a sighting", i, env.Kind)
		}
		s, err := intel.DecodeSighting(env)
		if err != nil {
			return nil, nil, refuse(t, "proof_malformed", ErrRefused, "proof %d: %v", i, err)
		}
		if s.Indicator.Key() != key {
			return nil, nil, refuse(t, "proof_wrong_indicator", ErrRefused, "proof %d names %s, the block names %s", i, s.Indicator.Key(), key)
		}
		origin := env.OriginID()
		if _, ok := f.roster[origin]; !ok {
			return nil, nil, refuse(t, "proof_not_member", ErrRefused, "proof %d is signed by %s, not a member", i, shortID(origin))
		}
		if env.Time.Before(from) || env.Time.After(to) {
			return nil, nil, refuse(t, "proof_stale", ErrRefused, "proof %d was sent at %s, outside the window [%s, %s]",
				i, env.Time.Format(time.RFC3339), from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		if s.LastSeen.After(env.Time.Add(signedSkew)) {
			return nil, nil, refuse(t, "proof_time", ErrRefused, "proof %d claims a sighting at %s, after it was sent at %s",
				i, s.LastSeen.Format(time.RFC3339), env.Time.Format(time.RFC3339))
		}
		if rerr := dist.add(f.rules, i, origin, s, from); rerr != nil {
			return nil, nil, rerr
		}
		if !s.Partial { // a partial is never full evidence
			signers[origin] = true
		}
		evidence = append(evidence, intel.Evidence{Origin: origin, Seq: env.Seq, Detector: s.Detector, Seen: s.LastSeen})
		proven = append(proven, provenSighting{origin: origin, s: s})
	}
	if len(signers) < f.rules.MinNodes {
		if rerr := f.checkDistributed(ind, &dist, len(signers)); rerr != nil {
			return nil, nil, rerr
		}
	}
	return mergeEvidence(nil, evidence), proven, nil
}
