package node

import (
	"hash/maphash"
	"iter"
)

// idSet is a set of policy IDs (as the numbers their hex digits spell)
// in one flat table, open addressing with linear probing: 8 bytes a
// slot, at most 3/4 full, so that a million IDs cost 16 MiB where a Go
// map of them costs over 35. Removal shifts the entries after it back
// (no tombstones), and the table shrinks when it falls below 1/8 full.
// The zero ID, which marks an empty slot, is held beside the table.
type idSet struct {
	slots []uint64
	n     int // IDs in slots
	zero  bool
	seed  maphash.Seed
}

const idSetMin = 64

func newIDSet() *idSet { return &idSet{seed: maphash.MakeSeed()} }

// Len is the number of IDs held.
func (s *idSet) Len() int {
	if s.zero {
		return s.n + 1
	}
	return s.n
}

func (s *idSet) home(id uint64) int {
	return int(maphash.Comparable(s.seed, id) & uint64(len(s.slots)-1))
}

// Has reports whether id is held.
func (s *idSet) Has(id uint64) bool {
	if id == 0 {
		return s.zero
	}
	if len(s.slots) == 0 {
		return false
	}
	mask := len(s.slots) - 1
	for i := s.home(id); ; i = (i + 1) & mask {
		switch s.slots[i] {
		case id:
			return true
		case 0:
			return false
		}
	}
}

// Add adds id; it reports whether id was new.
func (s *idSet) Add(id uint64) bool {
	if id == 0 {
		added := !s.zero
		s.zero = true
		return added
	}
	if (s.n+1)*4 > len(s.slots)*3 {
		s.resize(max(idSetMin, 2*len(s.slots)))
	}
	mask := len(s.slots) - 1
	for i := s.home(id); ; i = (i + 1) & mask {
		switch s.slots[i] {
		case id:
			return false
		case 0:
			s.slots[i] = id
			s.n++
			return true
		}
	}
}

// Remove removes id; it reports whether id was held.
func (s *idSet) Remove(id uint64) bool {
	if id == 0 {
		held := s.zero
		s.zero = false
		return held
	}
	if len(s.slots) == 0 {
		return false
	}
	mask := len(s.slots) - 1
	i := s.home(id)
	for ; s.slots[i] != id; i = (i + 1) & mask {
		if s.slots[i] == 0 {
			return false
		}
	}
	// Shift back the entries of the run after i that may sit at i: those
	// whose home is not cyclically in (i, j].
	for j := (i + 1) & mask; s.slots[j] != 0; j = (j + 1) & mask {
		h := s.home(s.slots[j])
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			s.slots[i], i = s.slots[j], j
		}
	}
	s.slots[i] = 0
	s.n--
	if len(s.slots) > idSetMin && s.n*8 < len(s.slots) {
		s.resize(len(s.slots) / 2)
	}
	return true
}

func (s *idSet) resize(size int) {
	old := s.slots
	s.slots = make([]uint64, size)
	mask := size - 1
	for _, id := range old {
		if id == 0 {
			continue
		}
		i := s.home(id)
		for s.slots[i] != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = id
	}
}

// All yields every ID held, in no particular order. The set must not
// change during the walk.
func (s *idSet) All() iter.Seq[uint64] {
	return func(yield func(uint64) bool) {
		if s.zero && !yield(0) {
			return
		}
		for _, id := range s.slots {
			if id != 0 && !yield(id) {
				return
			}
		}
	}
}
