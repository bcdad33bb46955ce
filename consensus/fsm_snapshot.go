package consensus

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/google/btree"
	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/warninglist"
)

// Snapshots: the whole state, every list sorted, and its restore. Version
// 3 writes the policies as binary records (snapshot_codec.go); versions 1
// and 2 were this state as one JSON object.

// snapshotState is the whole state, every list sorted: as JSON, all of a
// version 1 or 2 snapshot, and the part of a version 3 one before its
// policies.
type snapshotState struct {
	Version   int            `json:"version"`
	Clock     time.Time      `json:"clock"`
	Index     uint64         `json:"index,omitempty"`
	Chain     *chainState    `json:"chain,omitempty"` // the certified chain's head (certhook.go)
	Policies  []intel.Policy `json:"policies"`
	Protected []netip.Prefix `json:"protected"`
	Roster    []Member       `json:"roster"`
	// Version 2: the trust state.
	MeshID     string        `json:"mesh_id,omitempty"`
	Rules      Rules         `json:"rules"`
	Operators  []Operator    `json:"operators,omitempty"`
	JoinTokens []JoinToken   `json:"join_tokens,omitempty"`
	Nonces     []nonceRecord `json:"nonces,omitempty"`
	Departed   []departure   `json:"departed,omitempty"`
	// The members who lost trust lately (sitetrust.go); absent from
	// older snapshots: everyone fully trusted.
	SiteTrust []trustSnapshotRecord `json:"site_trust,omitempty"`
	// The feed policies and the operators' warninglist entries
	// (feedpolicy.go); absent from older snapshots.
	FeedPolicies []intel.FeedPolicy  `json:"feed_policies,omitempty"`
	Warninglist  []warninglist.Entry `json:"warninglist,omitempty"`
	// The indicators blocked automatically before (recidive.go); absent
	// from older snapshots.
	Recidive []recidiveRecord `json:"recidive,omitempty"`
	// The zones, flows and quarantines (segment.go); absent from older
	// snapshots.
	Segmentation *segSnapshot `json:"segmentation,omitempty"`
}

type nonceRecord struct {
	Nonce   string    `json:"nonce"`
	Expires time.Time `json:"expires"`
}

type departure struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// snapshotVersion is the version Persist writes (snapshot_codec.go);
// Restore reads 1 to snapshotVersion.
const snapshotVersion = 3

// fsmSnapshot holds a copy of the state taken under the lock; Persist
// encodes it outside the lock, concurrently with Apply. The policies are a
// copy-on-write clone of the store's tree (O(1) to take; Apply copies the
// nodes it changes afterwards) and copies of the tables their records
// refer to (reasons and authors, the values not held compactly, the
// extras: as many entries as distinct strings and policies with such
// values or evidence, references only); member
// values are copied, and their slices are never mutated in place by the
// FSM, so sharing them is safe.
type fsmSnapshot struct {
	clock     time.Time
	index     uint64
	chain     *chainState
	policies  *btree.BTreeG[rec]
	tables    recTables // copies: the store reuses their slots
	protected map[netip.Prefix]struct{}
	roster    map[string]Member
	meshID    string
	rules     Rules
	operators map[string]Operator
	tokens    map[string]JoinToken
	nonces    map[string]time.Time
	departed  map[string]time.Time
	trust     map[string]trustRecord
	feeds     feedState
	recidive  recidive
	seg       segState
}

// Snapshot implements raft.FSM: a cheap copy under the lock. raft calls
// it from the goroutine that applies, so no Apply runs meanwhile; the
// write lock keeps the readers off the tree while it is cloned.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &fsmSnapshot{
		clock:    f.clock,
		index:    f.index,
		chain:    f.chain.state(),
		policies: f.policies.byID.Clone(),
		tables: recTables{
			strs:   slices.Clone(f.policies.strs.strs),
			vals:   slices.Clone(f.policies.vals.items),
			extras: slices.Clone(f.policies.extras.items),
		},
		protected: maps.Clone(f.protected),
		roster:    maps.Clone(f.roster),
		meshID:    f.meshID,
		rules:     f.rules,
		operators: maps.Clone(f.operators),
		tokens:    maps.Clone(f.tokens),
		nonces:    maps.Clone(f.nonces),
		departed:  maps.Clone(f.departed),
		trust:     maps.Clone(f.trust),
		feeds:     f.feeds.clone(),
		recidive:  f.recidive.clone(),
		seg:       f.seg.clone(),
	}, nil
}

// state is the whole snapshot as one value, policies included.
func (s *fsmSnapshot) state() snapshotState {
	st := s.rest()
	st.Policies = make([]intel.Policy, 0, s.policies.Len())
	s.policies.Ascend(func(stored rec) bool {
		r := s.tables.view(stored)
		st.Policies = append(st.Policies, r.policy(s.tables.strs))
		return true
	})
	return st
}

// rest is the snapshot without its policies.
func (s *fsmSnapshot) rest() snapshotState {
	st := snapshotState{
		Version:   snapshotVersion,
		Clock:     s.clock,
		Index:     s.index,
		Chain:     s.chain,
		Protected: sortedPrefixes(s.protected),
		Roster:    make([]Member, 0, len(s.roster)),
	}
	for _, id := range slices.Sorted(maps.Keys(s.roster)) {
		st.Roster = append(st.Roster, s.roster[id])
	}
	st.MeshID, st.Rules = s.meshID, s.rules
	for _, id := range slices.Sorted(maps.Keys(s.operators)) {
		st.Operators = append(st.Operators, s.operators[id])
	}
	for _, id := range slices.Sorted(maps.Keys(s.tokens)) {
		st.JoinTokens = append(st.JoinTokens, s.tokens[id])
	}
	for _, n := range slices.Sorted(maps.Keys(s.nonces)) {
		st.Nonces = append(st.Nonces, nonceRecord{n, s.nonces[n]})
	}
	for _, id := range slices.Sorted(maps.Keys(s.departed)) {
		st.Departed = append(st.Departed, departure{id, s.departed[id]})
	}
	if len(s.trust) > 0 {
		st.SiteTrust = sortedTrust(s.trust)
	}
	if len(s.feeds.policies) > 0 {
		st.FeedPolicies = s.feeds.sortedPolicies()
	}
	if len(s.feeds.warn) > 0 {
		st.Warninglist = s.feeds.sortedWarn()
	}
	if len(s.recidive.order) > 0 {
		st.Recidive = s.recidive.snapshot()
	}
	st.Segmentation = s.seg.snapshot()
	return st
}

// Persist implements raft.FSMSnapshot. It streams the policies one at a
// time, in ID order (snapshot_codec.go), so that a snapshot of a million
// policies never exists in memory whole.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
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

// Restore implements raft.FSM: it replaces the whole state. The policies
// are decoded one at a time into a new store, outside the lock. The
// policy change log is emptied (PolicyChanges then answers ok=false).
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, policies, err := decodeSnapshot(bufio.NewReaderSize(rc, 64<<10))
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if st.Version < 1 || st.Version > snapshotVersion {
		return fmt.Errorf("restore snapshot: version %d, this node reads 1 to %d", st.Version, snapshotVersion)
	}
	protected := make(map[netip.Prefix]struct{}, len(st.Protected))
	protectedIndex := newPrefixIndex()
	for _, p := range st.Protected {
		p = p.Masked()
		if _, dup := protected[p]; !dup {
			protected[p] = struct{}{}
			protectedIndex.add(keyOfPrefix(p), 0)
		}
	}
	roster := make(map[string]Member, len(st.Roster))
	for _, m := range st.Roster {
		roster[m.ID] = m
	}
	operators := make(map[string]Operator, len(st.Operators))
	for _, o := range st.Operators {
		operators[o.KeyID] = o
	}
	tokens := make(map[string]JoinToken, len(st.JoinTokens))
	for _, t := range st.JoinTokens {
		tokens[t.ID] = t
	}
	nonces := make(map[string]time.Time, len(st.Nonces))
	for _, n := range st.Nonces {
		nonces[n.Nonce] = n.Expires
	}
	departed := make(map[string]time.Time, len(st.Departed))
	for _, d := range st.Departed {
		departed[d.ID] = d.At
	}
	trust, err := restoreTrust(st.SiteTrust)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	feeds, err := restoreFeedState(st.FeedPolicies, st.Warninglist)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	recid, err := restoreRecidive(st.Recidive)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	seg, err := restoreSegState(st.Segmentation)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	policies.changes = f.policies.changes
	policies.changes.reset()
	f.clock, f.policies, f.roster = st.Clock, policies, roster
	f.protected, f.protectedIndex = protected, protectedIndex
	f.meshID, f.rules, f.operators, f.tokens, f.nonces, f.departed = st.MeshID, st.Rules, operators, tokens, nonces, departed
	f.chain.restore(st.Chain)
	f.index = st.Index
	f.trust = trust
	f.feeds = feeds
	f.recidive = recid
	seg.changed = f.seg.changed
	f.seg = seg
	f.seg.signal()
	f.rebuildMemberIPs()
	f.touchRosterAll()
	f.reindexNonces()
	f.mu.Unlock()
	f.onChange()
	return nil
}

// decodeJSONSnapshot reads a snapshot of version 1 or 2, one JSON
// object: its policies into a new store, one at a time, and the other
// fields into st. Fields may come in any order.
func decodeJSONSnapshot(r io.Reader) (st snapshotState, s *policyStore, err error) {
	s = newPolicyStore()
	s.changes = nil // a restore is not a sequence of changes
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return st, nil, err
	}
	rest := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return st, nil, err
		}
		key, _ := tok.(string)
		if key != "policies" {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return st, nil, fmt.Errorf("field %q: %w", key, err)
			}
			rest[key] = raw
			continue
		}
		tok, err = dec.Token()
		if err != nil {
			return st, nil, fmt.Errorf("policies: %w", err)
		}
		if tok == nil {
			continue // null: none
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return st, nil, fmt.Errorf("policies: want a list, got %v", tok)
		}
		for i := 0; dec.More(); i++ {
			var p intel.Policy
			if err := dec.Decode(&p); err != nil {
				return st, nil, fmt.Errorf("policies[%d]: %w", i, err)
			}
			if err := s.load(p); err != nil {
				return st, nil, fmt.Errorf("policies[%d]: %w", i, err)
			}
		}
		if err := expectDelim(dec, ']'); err != nil {
			return st, nil, fmt.Errorf("policies: %w", err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return st, nil, err
	}
	b, err := json.Marshal(rest)
	if err != nil {
		return st, nil, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, nil, err
	}
	return st, s, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}
