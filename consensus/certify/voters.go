package certify

import (
	"fmt"
	"slices"

	"github.com/hashicorp/raft"
)

// MaxVoters bounds a voter set read from the wire or a configuration.
const MaxVoters = 64

// Voters is a voter set: node IDs (libp2p peer ID strings, the raft
// server IDs), sorted, without duplicates.
type Voters []string

// NewVoters returns ids as a voter set.
func NewVoters(ids ...string) Voters {
	v := slices.Clone(ids)
	slices.Sort(v)
	return slices.Compact(v)
}

// Majority is how many of the set make a majority.
func (v Voters) Majority() int { return len(v)/2 + 1 }

// Contains reports whether id is in the set.
func (v Voters) Contains(id string) bool {
	_, ok := slices.BinarySearch(v, id)
	return ok
}

// Equal reports whether both sets hold the same IDs.
func (v Voters) Equal(o Voters) bool { return slices.Equal(v, o) }

// ConfigVoters reads the voters of a raft configuration entry's data.
// Raft's decoder panics on bad input; the panic is returned as an error,
// since an edge decodes entries from untrusted senders.
func ConfigVoters(data []byte) (v Voters, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("configuration entry: %v", r)
		}
	}()
	cfg := raft.DecodeConfiguration(data)
	var ids []string
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	v = NewVoters(ids...)
	switch {
	case len(v) == 0:
		return nil, fmt.Errorf("configuration entry: no voters")
	case len(v) > MaxVoters:
		return nil, fmt.Errorf("configuration entry: %d voters, limit %d", len(v), MaxVoters)
	}
	return v, nil
}
