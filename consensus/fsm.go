package consensus

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/multiformats/go-multiaddr"

	"github.com/meshward/meshward/intel"
)

// fsm is the replicated state machine. Every method that changes state runs
// only from raft's apply goroutine; queries take the read lock.
//
// Determinism: Apply uses only the entry's bytes and the state. "Now" is the
// latest Command.At applied so far (a monotone clock that every replica
// computes identically); maps are walked in sorted key order wherever the
// walk can affect a result.
type fsm struct {
	mu        sync.RWMutex
	policies  map[string]intel.Policy
	protected map[netip.Prefix]struct{}
	roster    map[string]Member
	clock     time.Time // max Command.At applied
	index     uint64    // raft index of the last command entry applied

	// memberIPs are the host prefixes (/32, /128) of the members' routable
	// listen addresses: protected like the explicit ranges, derived from
	// the roster on every admit, removal and restore.
	memberIPs map[netip.Prefix]struct{}

	// Derived indexes, rebuilt on restore: they keep Apply from scanning
	// every policy on every entry.
	allows     int       // number of allow policies held
	nextExpiry time.Time // earliest ExpiresAt among held policies (zero: none)

	onChange func() // called after every apply and restore, outside the lock
}

var _ raft.FSM = (*fsm)(nil)

func newFSM(onChange func()) *fsm {
	if onChange == nil {
		onChange = func() {}
	}
	return &fsm{
		policies:  map[string]intel.Policy{},
		protected: map[netip.Prefix]struct{}{},
		roster:    map[string]Member{},
		memberIPs: map[netip.Prefix]struct{}{},
		onChange:  onChange,
	}
}

// applyFunc applies one command of a known type and returns the entry's
// response: nil or an error refusing it.
type applyFunc func(f *fsm, c *Command, now time.Time) error

// handlers is the dispatch table, indexed by command type.
var handlers = [256]applyFunc{
	CmdPutPolicy:    (*fsm).putPolicy,
	CmdRevokePolicy: (*fsm).revokePolicy,
	CmdProtect:      (*fsm).protect,
	CmdUnprotect:    (*fsm).unprotect,
	CmdAdmit:        (*fsm).admit,
	CmdRemoveMember: (*fsm).removeMember,
}

// Apply implements raft.FSM. It panics on a command type it does not know
// unless the type carries IgnoreUnknownFlag: a replica that cannot apply an
// entry must stop rather than diverge.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	f.mu.Lock()
	f.index = l.Index
	f.mu.Unlock()
	t := CommandType(l.Data[0])
	h := handlers[t]
	if h == nil {
		if t&IgnoreUnknownFlag != 0 {
			return nil
		}
		panic(fmt.Sprintf("consensus: log entry %d has unknown command type %d; upgrade this node", l.Index, uint8(t)))
	}
	c, err := DecodeCommand(l.Data)
	if err == nil {
		err = c.validate()
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	if c.At.After(f.clock) {
		f.clock = c.At
	}
	now := f.clock
	f.prune(now)
	err = h(f, &c, now)
	f.mu.Unlock()
	f.onChange()
	return err
}

// prune drops policies that have expired at now. It scans only when the
// earliest expiry has passed.
func (f *fsm) prune(now time.Time) {
	if f.nextExpiry.IsZero() || now.Before(f.nextExpiry) {
		return
	}
	f.deleteWhere(func(p intel.Policy) bool { return !p.Active(now) })
	f.reindex()
}

// set stores p, keeping the indexes up to date.
func (f *fsm) set(p intel.Policy) {
	if old, ok := f.policies[p.ID]; ok && old.Action == intel.ActionAllow {
		f.allows--
	}
	f.policies[p.ID] = p
	if p.Action == intel.ActionAllow {
		f.allows++
	}
	if !p.ExpiresAt.IsZero() && (f.nextExpiry.IsZero() || p.ExpiresAt.Before(f.nextExpiry)) {
		f.nextExpiry = p.ExpiresAt
	}
}

// deleteWhere deletes the policies matching pred. nextExpiry may be left
// early, which only costs a scan.
func (f *fsm) deleteWhere(pred func(intel.Policy) bool) {
	for id, p := range f.policies {
		if pred(p) {
			f.del(id)
		}
	}
}

func (f *fsm) del(id string) {
	if p, ok := f.policies[id]; ok {
		if p.Action == intel.ActionAllow {
			f.allows--
		}
		delete(f.policies, id)
	}
}

// reindex recomputes the derived indexes from the policies.
func (f *fsm) reindex() {
	f.allows, f.nextExpiry = 0, time.Time{}
	for _, p := range f.policies {
		if p.Action == intel.ActionAllow {
			f.allows++
		}
		if !p.ExpiresAt.IsZero() && (f.nextExpiry.IsZero() || p.ExpiresAt.Before(f.nextExpiry)) {
			f.nextExpiry = p.ExpiresAt
		}
	}
}

func (f *fsm) putPolicy(c *Command, now time.Time) error {
	p := *c.Policy
	if !p.Active(now) {
		return nil // already expired: nothing to hold
	}
	ind := p.Indicator
	switch p.Action {
	case intel.ActionBlock:
		if q, ok := ind.Prefix(); ok {
			for _, r := range sortedPrefixes(f.protected) {
				if q.Overlaps(r) {
					return fmt.Errorf("%w: block of %s overlaps protected %s", ErrProtected, ind, r)
				}
			}
			for _, r := range sortedPrefixes(f.memberIPs) {
				if q.Overlaps(r) {
					return fmt.Errorf("%w: block of %s overlaps the mesh member address %s", ErrProtected, ind, r.Addr())
				}
			}
		}
		// Name the conflicting allow with the smallest ID, so that the
		// response does not depend on map order; no sort on the hot path.
		var conflict *intel.Policy
		for _, o := range f.policies {
			if f.allows == 0 {
				break // no allow held: skip the scan
			}
			if o.Action == intel.ActionAllow && (conflict == nil || o.ID < conflict.ID) && ind.Overlaps(o.Indicator) {
				conflict = &o
			}
		}
		if conflict != nil {
			return fmt.Errorf("%w: block of %s overlaps allow %s (policy %s)", ErrAllowed, ind, conflict.Indicator, conflict.ID)
		}
	case intel.ActionAllow:
		f.deleteWhere(func(o intel.Policy) bool {
			return o.Action == intel.ActionBlock && o.Indicator.Overlaps(ind)
		})
	}
	if old, ok := f.policies[p.ID]; ok {
		merged := old
		if old.ExpiresAt.IsZero() || p.ExpiresAt.IsZero() {
			merged.ExpiresAt = time.Time{}
		} else if p.ExpiresAt.After(old.ExpiresAt) {
			merged.ExpiresAt = p.ExpiresAt
		}
		if merged.Reason == "" {
			merged.Reason = p.Reason
		}
		merged.Evidence = mergeEvidence(old.Evidence, p.Evidence)
		f.set(merged)
		return nil
	}
	p.Evidence = mergeEvidence(nil, p.Evidence)
	f.set(p)
	return nil
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

func (f *fsm) revokePolicy(c *Command, _ time.Time) error {
	f.del(c.PolicyID)
	return nil
}

func (f *fsm) protect(c *Command, _ time.Time) error {
	p, err := parsePrefix(c.Prefix)
	if err != nil {
		return err
	}
	f.protected[p] = struct{}{}
	f.dropBlocksOverlapping(p)
	return nil
}

// dropBlocksOverlapping deletes the block policies that cover any of ps.
func (f *fsm) dropBlocksOverlapping(ps ...netip.Prefix) {
	f.deleteWhere(func(o intel.Policy) bool {
		q, ok := o.Indicator.Prefix()
		if o.Action != intel.ActionBlock || !ok {
			return false
		}
		for _, p := range ps {
			if q.Overlaps(p) {
				return true
			}
		}
		return false
	})
}

// rebuildMemberIPs recomputes memberIPs from the roster and returns the
// prefixes that were not protected before.
func (f *fsm) rebuildMemberIPs() []netip.Prefix {
	next := map[netip.Prefix]struct{}{}
	var added []netip.Prefix
	for _, m := range f.roster {
		for _, p := range MemberPrefixes(m.Addrs) {
			next[p] = struct{}{}
			if _, ok := f.memberIPs[p]; !ok {
				added = append(added, p)
			}
		}
	}
	f.memberIPs = next
	return added
}

// MemberPrefixes returns the host prefixes of the routable IP addresses in
// a member's listen multiaddrs, sorted and without duplicates. Unspecified,
// loopback, link-local and multicast addresses are skipped: they name no
// host of the mesh from anywhere else, and loopback stays blockable so that
// a test mesh on 127.0.0.1 can still exercise enforcement. Multiaddrs that
// do not parse, or carry a DNS name instead of an IP, contribute nothing.
// The result depends only on addrs, so every replica derives the same set.
func MemberPrefixes(addrs []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range addrs {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			continue
		}
		for _, proto := range []int{multiaddr.P_IP4, multiaddr.P_IP6} {
			v, err := a.ValueForProtocol(proto)
			if err != nil {
				continue
			}
			ip, err := netip.ParseAddr(v)
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			if ip.IsUnspecified() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
				continue
			}
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return slices.Compact(out)
}

func (f *fsm) unprotect(c *Command, _ time.Time) error {
	p, err := parsePrefix(c.Prefix)
	if err != nil {
		return err
	}
	delete(f.protected, p)
	return nil
}

func (f *fsm) admit(c *Command, _ time.Time) error {
	m := *c.Member
	m.Addrs = slices.Clone(m.Addrs)
	if old, ok := f.roster[m.ID]; ok && !old.AdmittedAt.IsZero() {
		m.AdmittedAt = old.AdmittedAt
	}
	if m.AdmittedAt.IsZero() {
		m.AdmittedAt = c.At
	}
	f.roster[m.ID] = m
	if added := f.rebuildMemberIPs(); len(added) > 0 {
		f.dropBlocksOverlapping(added...)
	}
	return nil
}

func (f *fsm) removeMember(c *Command, _ time.Time) error {
	delete(f.roster, c.Member.ID)
	f.rebuildMemberIPs()
	return nil
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

// --- queries -------------------------------------------------------------

func (f *fsm) activePolicies(now time.Time) []intel.Policy {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]intel.Policy, 0, len(f.policies))
	for _, p := range f.policies {
		if p.Active(now) {
			p.Evidence = slices.Clone(p.Evidence)
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b intel.Policy) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// activePolicy returns the policy with this ID if it is held and active at now.
func (f *fsm) activePolicy(id string, now time.Time) (intel.Policy, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.policies[id]
	if !ok || !p.Active(now) {
		return intel.Policy{}, false
	}
	p.Evidence = slices.Clone(p.Evidence)
	return p, true
}

// protectedPrefixes returns the explicit protected ranges and the member
// addresses, sorted and without duplicates.
func (f *fsm) protectedPrefixes() []netip.Prefix {
	f.mu.RLock()
	defer f.mu.RUnlock()
	all := maps.Clone(f.protected)
	maps.Copy(all, f.memberIPs)
	return sortedPrefixes(all)
}

// appliedIndex is the raft index of the last command applied (or of the
// snapshot restored).
func (f *fsm) appliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index
}

func (f *fsm) members() []Member {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Member, 0, len(f.roster))
	for _, m := range f.roster {
		m.Addrs = slices.Clone(m.Addrs)
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (f *fsm) member(id string) (Member, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.roster[id]
	return m, ok
}

func (f *fsm) counts() (policies, protected, members int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.policies), len(f.protected), len(f.roster)
}

// --- snapshots -----------------------------------------------------------

// snapshotState is the JSON form of the whole state, every list sorted.
type snapshotState struct {
	Version   int            `json:"version"`
	Clock     time.Time      `json:"clock"`
	Index     uint64         `json:"index,omitempty"`
	Policies  []intel.Policy `json:"policies"`
	Protected []netip.Prefix `json:"protected"`
	Roster    []Member       `json:"roster"`
}

const snapshotVersion = 1

// fsmSnapshot holds a copy of the state taken under the lock; Persist
// encodes it outside the lock, concurrently with Apply. Policy and member
// values are copied; their slices are never mutated in place by the FSM, so
// sharing them is safe.
type fsmSnapshot struct {
	clock     time.Time
	index     uint64
	policies  map[string]intel.Policy
	protected map[netip.Prefix]struct{}
	roster    map[string]Member
}

// Snapshot implements raft.FSM: a cheap copy under the lock.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{
		clock:     f.clock,
		index:     f.index,
		policies:  maps.Clone(f.policies),
		protected: maps.Clone(f.protected),
		roster:    maps.Clone(f.roster),
	}, nil
}

func (s *fsmSnapshot) state() snapshotState {
	st := snapshotState{
		Version:   snapshotVersion,
		Clock:     s.clock,
		Index:     s.index,
		Policies:  make([]intel.Policy, 0, len(s.policies)),
		Protected: sortedPrefixes(s.protected),
		Roster:    make([]Member, 0, len(s.roster)),
	}
	for _, id := range slices.Sorted(maps.Keys(s.policies)) {
		st.Policies = append(st.Policies, s.policies[id])
	}
	for _, id := range slices.Sorted(maps.Keys(s.roster)) {
		st.Roster = append(st.Roster, s.roster[id])
	}
	return st
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.state()); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot sink: %w", err)
	}
	return nil
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the whole state.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st snapshotState
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if st.Version != snapshotVersion {
		return fmt.Errorf("restore snapshot: version %d, this node reads %d", st.Version, snapshotVersion)
	}
	policies := make(map[string]intel.Policy, len(st.Policies))
	for _, p := range st.Policies {
		policies[p.ID] = p
	}
	protected := make(map[netip.Prefix]struct{}, len(st.Protected))
	for _, p := range st.Protected {
		protected[p.Masked()] = struct{}{}
	}
	roster := make(map[string]Member, len(st.Roster))
	for _, m := range st.Roster {
		roster[m.ID] = m
	}
	f.mu.Lock()
	f.clock, f.policies, f.protected, f.roster = st.Clock, policies, protected, roster
	f.index = st.Index
	f.rebuildMemberIPs()
	f.reindex()
	f.mu.Unlock()
	f.onChange()
	return nil
}
