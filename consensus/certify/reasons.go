package certify

import (
	"errors"
	"fmt"
)

// Refusal reasons: each refusal (and each drop) is counted under one of
// these names (Edge.Counts).
const (
	ReasonMalformed        = "malformed"         // an entry's fields or a configuration do not decode
	ReasonWrongMesh        = "wrong_mesh"        // a certificate or manifest for another mesh
	ReasonBadSignature     = "bad_signature"     // a signature that does not verify
	ReasonNotVoter         = "not_voter"         // signer not a voter at that index
	ReasonDuplicateSigner  = "duplicate_signer"  // the same voter twice on one manifest
	ReasonDuplicate        = "duplicate"         // an entry or certificate already held
	ReasonOld              = "old"               // at or below the applied index (a replay)
	ReasonTooFarAhead      = "too_far_ahead"     // beyond the window: catch up from a snapshot
	ReasonConflictingEntry = "conflicting_entry" // another entry for an index already held
	ReasonBadLink          = "bad_link"          // an entry whose prev contradicts the chain held
	ReasonChainMismatch    = "chain_mismatch"    // a voter's hash differs from the chain recomputed
	ReasonEquivocation     = "equivocation"      // two different hashes signed for one index
	ReasonDiscarded        = "discarded"         // entries dropped when a majority disowned them
	ReasonBufferFull       = "buffer_full"       // an entry dropped for room
	ReasonCertEvicted      = "cert_evicted"      // a voter's oldest certificate dropped for room
	ReasonMinority         = "minority"          // a manifest without a majority
	ReasonSnapshotHash     = "snapshot_hash"     // snapshot bytes that do not match the manifest
	ReasonHalted           = "halted"            // the apply callback failed: the edge stopped
)

// ErrRefused is wrapped by every *Refusal.
var ErrRefused = errors.New("refused")

// Refusal is why an input was refused (or, for ReasonEquivocation, kept
// as evidence but flagged).
type Refusal struct {
	Reason string
	Index  uint64
	Detail string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("certify: %s at index %d: %s", r.Reason, r.Index, r.Detail)
}

func (r *Refusal) Unwrap() error { return ErrRefused }

// ReasonOf returns the reason of a *Refusal in err's chain, or "".
func ReasonOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}
