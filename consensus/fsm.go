package consensus

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// fsm is the replicated state machine. Every method that changes state runs
// only from raft's apply goroutine; queries take the read lock.
//
// Determinism: Apply uses only the entry's bytes and the state. "Now" is the
// latest Command.At of the commands accepted so far (a monotone clock that
// every replica computes identically); maps are walked in sorted key order
// wherever the walk can affect a result.
//
// Trust: the FSM is the last line. What it applies must be provable from
// the entry alone: an automatic block carries the signed sightings of k
// distinct roster members within W (proof.go), an operator's command the
// signature of an operator key the FSM holds (operator.go), a leave the
// leaving node's own signature. Everything else is refused, counted, and
// changes nothing, not even the clock.
type fsm struct {
	mu       sync.RWMutex
	policies *policyStore // compact, indexed (policystore.go)
	// protected are the explicit protected ranges; protectedIndex holds
	// the same prefixes, ordered, for the overlap checks.
	protected      map[netip.Prefix]struct{}
	protectedIndex *prefixIndex
	roster         map[string]Member
	clock          time.Time // max Command.At of the accepted commands
	index          uint64    // raft index of the last command entry applied

	// The trust state, set by the initialisation entry and by operator
	// commands.
	meshID    string
	rules     Rules
	operators map[string]Operator  // by key ID
	tokens    map[string]JoinToken // by token ID
	nonces    map[string]time.Time // operator command nonce -> its expiry
	departed  map[string]time.Time // members who left or were removed -> when
	// trust are the members who lost trust lately (sitetrust.go).
	trust       map[string]trustRecord
	trustCounts siteTrustCounts

	// memberIPs are the host prefixes (/32, /128) the members were seen
	// connecting from (Member.Observed), except loopback and link-local:
	// protected like the explicit ranges, derived from the roster on
	// every admit, removal and restore.
	memberIPs map[netip.Prefix]struct{}
	// rosterGen counts the roster's changes (RosterVersion);
	// rosterTouched are the members added, changed or removed since the
	// peer loop last took them (takeRosterChanges), rosterAll that it
	// must look at every member (after a restore, at start, or when more
	// than maxRosterTouched piled up).
	rosterGen     uint64
	rosterTouched map[string]struct{}
	rosterAll     bool
	memberIndex   *prefixIndex // memberIPs, ordered
	changeLogSize int          // entries of the policy change log
	// feeds are the feed policies and the warninglist extensions
	// (feedpolicy.go).
	feeds feedState
	// recidive are the indicators blocked automatically before
	// (recidive.go).
	recidive recidive
	// seg are the zones, flows and quarantines (segment.go).
	seg segState

	// nextNonceExpiry is the earliest nonce expiry (zero: none), rebuilt
	// on restore.
	nextNonceExpiry time.Time

	refused refusals
	log     *slog.Logger
	// verify opens proofs, skipping the signature check for bytes it
	// has verified before (a pure function of the bytes: Apply's result
	// is the same either way). Nil verifies every time.
	verify *intel.VerifyCache
	// decoded holds what the leader's early check decoded, for its Apply
	// of the same bytes (memo.go). Nil decodes every time.
	decoded *decodeMemo

	onChange func() // called after every apply and restore, outside the lock

	chain certChain // the certified hash chain over the applied entries (certhook.go)
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

func newFSM(onChange func()) *fsm {
	if onChange == nil {
		onChange = func() {}
	}
	f := &fsm{
		policies:       newPolicyStore(),
		protected:      map[netip.Prefix]struct{}{},
		protectedIndex: newPrefixIndex(),
		roster:         map[string]Member{},
		operators:      map[string]Operator{},
		tokens:         map[string]JoinToken{},
		nonces:         map[string]time.Time{},
		departed:       map[string]time.Time{},
		trust:          map[string]trustRecord{},
		recidive:       newRecidive(),
		seg:            newSegState(),
		memberIPs:      map[netip.Prefix]struct{}{},
		memberIndex:    newPrefixIndex(),
		rosterAll:      true,
		changeLogSize:  defaultChangeLogSize,
		log:            slog.New(slog.DiscardHandler),
		decoded:        newDecodeMemo(),
		onChange:       onChange,
	}
	f.policies.changes = newChangeLog(f.changeLogSize)
	return f
}

// applyFunc checks one command of a known type against the state at now,
// without changing anything, and returns either the change to make or the
// refusal. Apply runs the change under the write lock; the proposing path
// runs only the check, under the read lock, to refuse early.
type applyFunc func(f *fsm, c *Command, now time.Time) (func(), *RefusalError)

// handlers is the dispatch table, indexed by command type. The types that
// used to change state without a proof stay in the table so that their
// entries are refused and counted rather than stopping the replica.
var handlers = [256]applyFunc{
	CmdPutPolicy:    (*fsm).putPolicy,
	CmdProvenBlock:  (*fsm).putPolicy,
	CmdRevokePolicy: (*fsm).unsigned,
	CmdProtect:      (*fsm).unsigned,
	CmdUnprotect:    (*fsm).unsigned,
	CmdAdmit:        (*fsm).admit,
	CmdRemoveMember: (*fsm).unsigned,
	CmdInit:         (*fsm).init,
	CmdOperator:     (*fsm).operator,
	CmdLeave:        (*fsm).leave,
	CmdFeedBlock:    (*fsm).feedBlock,
	CmdQuarantine:   (*fsm).quarantineAuto,
}

// Apply implements raft.FSM. It panics on a command type it does not know
// unless the type carries IgnoreUnknownFlag: a replica that cannot apply an
// entry must stop rather than diverge. A refused command returns its
// *RefusalError and changes nothing.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: the entries are applied in
// order under one hold of the lock, each exactly as Apply would, and
// onChange is called once after the batch if any entry was accepted.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	// The leader's early check may have decoded these exact bytes
	// already; taken outside the lock.
	memos := make([]*Command, len(logs))
	for i, l := range logs {
		if l.Type == raft.LogCommand && len(l.Data) > 0 && handlers[CommandType(l.Data[0])] != nil {
			if memo, ok := f.decoded.take(l.Data); ok {
				memos[i] = &memo
			}
		}
	}
	changed := false
	var refusals []*RefusalError
	var refusedAt []uint64
	func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		skip := f.chain.skip(logs)
		f.chain.extend(logs[skip:])
		for i, l := range logs {
			if i >= skip && l.Type == raft.LogConfiguration {
				// The servers changed: whose connections are
				// protected follows them (Consensus.peerLoop).
				changed = true
			}
			if i < skip || l.Type != raft.LogCommand || len(l.Data) == 0 {
				continue
			}
			rerr := f.applyLocked(l, memos[i])
			if rerr != nil {
				out[i] = rerr
				refusals, refusedAt = append(refusals, rerr), append(refusedAt, l.Index)
				continue
			}
			if handlers[CommandType(l.Data[0])] != nil {
				changed = true
			}
		}
	}()
	for i, rerr := range refusals {
		f.log.Debug("command refused", "command", rerr.Command.String(), "reason", rerr.Reason, "index", refusedAt[i], "err", rerr.Err)
	}
	if changed {
		f.onChange()
	}
	return out
}

// applyLocked applies one command entry; memo, when not nil, is its
// decoding by the early check. Caller holds the write lock.
func (f *fsm) applyLocked(l *raft.Log, memo *Command) *RefusalError {
	t := CommandType(l.Data[0])
	f.index = l.Index
	if handlers[t] == nil {
		if t&IgnoreUnknownFlag != 0 {
			return nil
		}
		panic(fmt.Sprintf("consensus: log entry %d has unknown command type %d; upgrade this node", l.Index, uint8(t)))
	}
	var now time.Time
	var change func()
	var rerr *RefusalError
	if memo != nil {
		now, change, rerr = f.checkDecoded(memo)
	} else {
		now, change, rerr = f.check(l.Data)
	}
	if rerr != nil {
		// Counted before the index is visible to readers, so that whoever
		// waits for this index sees the refusal counted.
		f.refused.add(rerr.Command.String(), rerr.Reason)
		return rerr
	}
	if t != CmdAdmit {
		// Only an accepted command moves the clock. The leader's own
		// roster entries do not: they carry no signed time.
		f.clock = now
	}
	f.prune(f.clock)
	change()
	return nil
}

// check decodes an entry and checks it against the state. Caller holds
// the lock (read or write).
func (f *fsm) check(data []byte) (time.Time, func(), *RefusalError) {
	t := CommandType(data[0])
	if len(data) > maxCommandSize {
		return time.Time{}, nil, refuse(t, "oversized", ErrInvalidCommand, "entry is %d bytes, limit %d", len(data), maxCommandSize)
	}
	c, err := DecodeCommand(data)
	if err != nil {
		return time.Time{}, nil, refuse(t, "malformed", ErrInvalidCommand, "%v", err)
	}
	return f.checkDecoded(&c)
}

// checkDecoded is check after the size check and the decoding: c must be
// DecodeCommand's result for the entry. Caller holds the lock.
func (f *fsm) checkDecoded(c *Command) (time.Time, func(), *RefusalError) {
	t := c.Type
	if rerr := c.validate(); rerr != nil {
		return time.Time{}, nil, rerr
	}
	if f.meshID == "" && t != CmdInit {
		return time.Time{}, nil, refuse(t, "not_initialised", ErrRefused, "the mesh has no initialisation entry yet")
	}
	now := f.clock
	if c.At.After(now) {
		now = c.At
	}
	change, rerr := handlers[t](f, c, now)
	return now, change, rerr
}

// precheck runs Apply's checks on an encoded command against the current
// state without changing it, so that the proposing path refuses early
// with the reasons Apply would give. The refusal is counted. c, when not
// nil, is DecodeCommand(data), already decoded by the caller; the proofs
// it opens fill the verify cache, so that Apply on this node only hashes
// them, and when the check passes *c is kept in the decode memo, so that
// Apply on this node does not decode data again: neither the caller nor
// anyone else may mutate *c afterwards.
func (f *fsm) precheck(data []byte, c *Command) error {
	if len(data) == 0 {
		return refuse(0, "malformed", ErrInvalidCommand, "empty entry")
	}
	if handlers[CommandType(data[0])] == nil {
		return nil // an ignorable type: Apply skips it
	}
	var rerr *RefusalError
	f.mu.RLock()
	if c == nil || len(data) > maxCommandSize {
		_, _, rerr = f.check(data)
	} else {
		_, _, rerr = f.checkDecoded(c)
	}
	f.mu.RUnlock()
	if rerr != nil {
		f.count(rerr, 0)
		return rerr
	}
	if c != nil && len(data) <= maxCommandSize {
		f.decoded.put(data, *c)
	}
	return nil
}

// count records a refusal and logs it at debug level.
func (f *fsm) count(r *RefusalError, index uint64) {
	f.refused.add(r.Command.String(), r.Reason)
	f.log.Debug("command refused", "command", r.Command.String(), "reason", r.Reason, "index", index, "err", r.Err)
}

// prune drops policies that have expired at now, and the nonces and join
// tokens past their expiry. It visits only what has expired.
func (f *fsm) prune(now time.Time) {
	f.pruneTrust(now)
	f.seg.prune(now)
	f.policies.pruneExpired(now)
}

// reindexNonces recomputes the earliest nonce expiry.
func (f *fsm) reindexNonces() {
	f.nextNonceExpiry = time.Time{}
	for _, exp := range f.nonces {
		if f.nextNonceExpiry.IsZero() || exp.Before(f.nextNonceExpiry) {
			f.nextNonceExpiry = exp
		}
	}
}

// del drops the policy with this ID, if held.
func (f *fsm) del(id string) {
	if n, ok := parseID(id); ok {
		f.policies.delete(n)
	}
}

// unsigned refuses the command types that once changed the mesh on a
// member's word alone: revoke, protect, unprotect and remove-member are
// operator commands now.
func (f *fsm) unsigned(c *Command, _ time.Time) (func(), *RefusalError) {
	return nil, refuse(c.Type, "unsigned", ErrRefused, "a %s needs an operator signature (send it as an operator command)", c.Type)
}

// putPolicy is an automatic block: a block (only) within the TTL cap,
// above the floors, proven by its signed sightings, vetoed by protected
// ranges and allow policies.
func (f *fsm) putPolicy(c *Command, now time.Time) (func(), *RefusalError) {
	p := *c.Policy
	if p.Action != intel.ActionBlock {
		return nil, refuse(c.Type, "action", ErrRefused, "an automatic policy may only block, not %s", p.Action)
	}
	prior, inForce := f.priorBlocks(p.Indicator, p.ID, now)
	if ttlCap := recidiveTTL(f.rules, prior); p.ExpiresAt.IsZero() || p.ExpiresAt.Sub(p.CreatedAt) > ttlCap || p.CreatedAt.After(now.Add(signedSkew)) {
		return nil, refuse(c.Type, "ttl_cap", ErrRefused, "an automatic block lasts at most %s from now (%d blocked before; created %s, expires %s)",
			ttlCap, prior, p.CreatedAt.Format(time.RFC3339), p.ExpiresAt.Format(time.RFC3339))
	}
	if err := f.rules.Floors.CheckBlock(p.Indicator, false); err != nil {
		return nil, refuse(c.Type, "floor", ErrRefused, "%w", err)
	}
	ev, proven, rerr := f.verifyProofs(p.Indicator, c.Proofs, now)
	if rerr != nil {
		return nil, rerr
	}
	if rerr := f.checkMinRisk(c.Type, p.Indicator, proven, now); rerr != nil {
		return nil, rerr
	}
	if rerr := f.blockVeto(c.Type, p.Indicator, now); rerr != nil {
		return nil, rerr
	}
	p.Evidence = ev
	return func() {
		// A new episode (no automatic block of it in force) counts
		// towards recidive; a block merged into one in force does not.
		if !inForce {
			f.recidive.record(p.Indicator)
		}
		f.store(p, now)
	}, nil
}

// blockVeto refuses a block of ind that covers a protected range, a
// member's address or an active allow. It names the first protected range
// in address order, else the first member address, else the conflicting
// allow with the smallest ID, so that the answer does not depend on the
// history of the state.
func (f *fsm) blockVeto(t CommandType, ind intel.Indicator, now time.Time) *RefusalError {
	if q, ok := ind.Prefix(); ok {
		k := keyOfPrefix(q)
		if r, _, ok := f.protectedIndex.first(k); ok {
			return refuse(t, "protected", ErrProtected, "block of %s overlaps protected %s", ind, r.prefix())
		}
		if r, _, ok := f.memberIndex.first(k); ok {
			return refuse(t, "protected", ErrProtected, "block of %s overlaps the mesh member address %s", ind, r.prefix().Addr())
		}
	}
	if f.policies.allows.len() == 0 {
		return nil
	}
	if r, ok := f.policies.firstActive(actAllow, indexKeyOf(ind), now); ok {
		return refuse(t, "allowed", ErrAllowed, "block of %s overlaps allow %s (policy %s)", ind, r.indicator(), formatID(r.id))
	}
	return nil
}

// store adds or merges an accepted policy. An allow drops the blocks it
// overlaps.
func (f *fsm) store(p intel.Policy, now time.Time) {
	if !p.Active(now) {
		return // already expired: nothing to hold
	}
	if p.Action == intel.ActionAllow {
		for _, id := range f.policies.overlappingIDs(actBlock, indexKeyOf(p.Indicator)) {
			f.overturn(id, now)
			f.policies.delete(id)
		}
	}
	f.policies.put(p)
}

// mergeEvidence returns a new slice: the union of a and b without
// duplicates (same origin and sequence number), oldest first, bounded to
// maxEvidence entries (the earliest are kept: they explain the decision).
func mergeEvidence(a, b []intel.Evidence) []intel.Evidence {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make([]intel.Evidence, 0, len(a)+len(b))
	out = append(append(out, a...), b...)
	slices.SortFunc(out, func(x, y intel.Evidence) int {
		return cmp.Or(x.Seen.Compare(y.Seen), cmp.Compare(x.Origin, y.Origin), cmp.Compare(x.Seq, y.Seq), cmp.Compare(x.Detector, y.Detector))
	})
	out = slices.CompactFunc(out, func(x, y intel.Evidence) bool { return x.Origin == y.Origin && x.Seq == y.Seq })
	if len(out) > maxEvidence {
		out = out[:maxEvidence]
	}
	return slices.Clip(out)
}

// dropBlocksOverlapping deletes the block policies that cover any of ps.
func (f *fsm) dropBlocksOverlapping(ps ...netip.Prefix) {
	for _, p := range ps {
		for _, id := range f.policies.overlappingIDs(actBlock, prefixIKey(p)) {
			f.policies.delete(id)
		}
	}
}

// blockCovering returns an active block policy covering p, the one with
// the smallest ID.
func (f *fsm) blockCovering(p netip.Prefix, now time.Time) (intel.Policy, bool) {
	r, ok := f.policies.firstActive(actBlock, prefixIKey(p), now)
	if !ok {
		return intel.Policy{}, false
	}
	return r.policy(f.policies.strs.strs), true
}

// protect adds an explicit protected range.
func (f *fsm) protect(p netip.Prefix) {
	if _, ok := f.protected[p]; !ok {
		f.protected[p] = struct{}{}
		f.protectedIndex.add(keyOfPrefix(p), 0)
	}
}

// unprotect removes an explicit protected range.
func (f *fsm) unprotect(p netip.Prefix) {
	if _, ok := f.protected[p]; ok {
		delete(f.protected, p)
		f.protectedIndex.remove(keyOfPrefix(p), 0)
	}
}

// maxRosterTouched bounds the members the fsm remembers as changed for
// the peer loop; past it the loop looks at the whole roster once.
const maxRosterTouched = 4096

// touchRoster records that member id was added, changed or removed.
// The caller holds the write lock.
func (f *fsm) touchRoster(id string) {
	f.rosterGen++
	if f.rosterAll {
		return
	}
	if len(f.rosterTouched) >= maxRosterTouched {
		f.rosterAll, f.rosterTouched = true, nil
		return
	}
	if f.rosterTouched == nil {
		f.rosterTouched = map[string]struct{}{}
	}
	f.rosterTouched[id] = struct{}{}
}

// touchRosterAll records that any member may have changed (a restore).
// The caller holds the write lock.
func (f *fsm) touchRosterAll() {
	f.rosterGen++
	f.rosterAll, f.rosterTouched = true, nil
}

// takeRosterChanges returns the members changed since the last call, or
// all: every member must be looked at; and forgets them.
func (f *fsm) takeRosterChanges() (ids []string, all bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	all = f.rosterAll
	if !all {
		for id := range f.rosterTouched {
			ids = append(ids, id)
		}
	}
	f.rosterAll, f.rosterTouched = false, nil
	return ids, all
}

// rosterVersion counts the roster's changes: equal versions, equal
// rosters.
func (f *fsm) rosterVersion() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rosterGen
}

// addMemberIPs adds a new member's observed prefixes to memberIPs: an
// admission needs no rebuild over the whole roster. The caller holds the
// write lock.
func (f *fsm) addMemberIPs(m Member) {
	for _, p := range MemberPrefixes(m.Observed) {
		if _, ok := f.memberIPs[p]; !ok {
			f.memberIPs[p] = struct{}{}
			f.memberIndex.add(keyOfPrefix(p), 0)
		}
	}
}

// rebuildMemberIPs recomputes memberIPs from the roster: the observed
// addresses of every member that name a host from elsewhere.
func (f *fsm) rebuildMemberIPs() {
	next := map[netip.Prefix]struct{}{}
	for _, m := range f.roster {
		for _, p := range MemberPrefixes(m.Observed) {
			next[p] = struct{}{}
		}
	}
	idx := newPrefixIndex()
	for p := range next {
		idx.add(keyOfPrefix(p), 0)
	}
	f.memberIPs, f.memberIndex = next, idx
}

// MemberPrefixes returns the protected prefixes among a member's observed
// addresses (Member.Observed), sorted and without duplicates: the host
// prefixes that parse and are not unspecified, loopback, link-local or
// multicast. The result depends only on observed, so every replica
// derives the same set.
func MemberPrefixes(observed []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range observed {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Bits() != p.Addr().BitLen() {
			continue
		}
		ip := p.Addr().Unmap()
		if !protectable(ip) {
			continue
		}
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return slices.Compact(out)
}

// parsePrefix reads a command's range. Commands carry CIDR notation only:
// what the FSM accepts must not change between versions.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		return netip.Prefix{}, fmt.Errorf("%w: prefix %q: want CIDR notation", ErrInvalidCommand, s)
	}
	p, err := intel.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %v", ErrInvalidCommand, err)
	}
	return p, nil
}

func sortedPrefixes(m map[netip.Prefix]struct{}) []netip.Prefix {
	out := slices.Collect(maps.Keys(m))
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return out
}
