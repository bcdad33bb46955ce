package consensus

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// Snapshots: the whole state as sorted JSON, and its restore.

// snapshotState is the JSON form of the whole state, every list sorted.
type snapshotState struct {
	Version   int            `json:"version"`
	Clock     time.Time      `json:"clock"`
	Index     uint64         `json:"index,omitempty"`
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
}

type nonceRecord struct {
	Nonce   string    `json:"nonce"`
	Expires time.Time `json:"expires"`
}

type departure struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

const snapshotVersion = 2

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
	meshID    string
	rules     Rules
	operators map[string]Operator
	tokens    map[string]JoinToken
	nonces    map[string]time.Time
	departed  map[string]time.Time
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
		meshID:    f.meshID,
		rules:     f.rules,
		operators: maps.Clone(f.operators),
		tokens:    maps.Clone(f.tokens),
		nonces:    maps.Clone(f.nonces),
		departed:  maps.Clone(f.departed),
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
	if st.Version < 1 || st.Version > snapshotVersion {
		return fmt.Errorf("restore snapshot: version %d, this node reads 1 to %d", st.Version, snapshotVersion)
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
	f.mu.Lock()
	f.clock, f.policies, f.protected, f.roster = st.Clock, policies, protected, roster
	f.meshID, f.rules, f.operators, f.tokens, f.nonces, f.departed = st.MeshID, st.Rules, operators, tokens, nonces, departed
	f.index = st.Index
	f.rebuildMemberIPs()
	f.reindex()
	f.mu.Unlock()
	f.onChange()
	return nil
}
