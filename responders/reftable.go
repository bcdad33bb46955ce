package responders

import "hash/maphash"

// refTable is a hash set of slab indices (refs) whose keys live in the
// slab: open addressing with linear probing and backward-shift deletion,
// 4 bytes a slot and no pointer, where a map holding the keys themselves
// costs 20 to 40 bytes an entry. hash gives a ref's hash; look-ups
// compare through a function of their caller's.
type refTable struct {
	slots []int32 // ref+1; 0: empty
	n     int
	hash  func(ref int32) uint64
}

const minTableSize = 16

func newRefTable(hash func(int32) uint64) *refTable {
	return &refTable{slots: make([]int32, minTableSize), hash: hash}
}

// Len is the number of refs held.
func (t *refTable) Len() int { return t.n }

// find returns the ref of hash h that eq accepts.
func (t *refTable) find(h uint64, eq func(ref int32) bool) (int32, bool) {
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return none, false
		}
		if eq(s - 1) {
			return s - 1, true
		}
	}
}

// insert adds ref, which must not be held.
func (t *refTable) insert(ref int32) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(len(t.slots) * 2)
	}
	t.place(ref)
	t.n++
}

func (t *refTable) place(ref int32) {
	mask := uint64(len(t.slots) - 1)
	i := t.hash(ref) & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = ref + 1
}

// delete removes ref, if held.
func (t *refTable) delete(ref int32) {
	mask := uint64(len(t.slots) - 1)
	i := t.hash(ref) & mask
	for t.slots[i] != ref+1 {
		if t.slots[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	// Shift back the entries after i that probed past it.
	for j := i; ; {
		j = (j + 1) & mask
		s := t.slots[j]
		if s == 0 {
			break
		}
		k := t.hash(s-1) & mask // where s would be without collisions
		// s stays when k lies cyclically in (i, j].
		if i <= j && (i < k && k <= j) || i > j && (i < k || k <= j) {
			continue
		}
		t.slots[i] = s
		i = j
	}
	t.slots[i] = 0
	t.n--
	if len(t.slots) > 1024 && t.n*8 < len(t.slots) {
		t.resize(len(t.slots) / 4)
	}
}

// reserve makes room for n refs without growing.
func (t *refTable) reserve(n int) {
	size := len(t.slots)
	for n*4 > size*3 {
		size *= 2
	}
	if size > len(t.slots) {
		t.resize(size)
	}
}

func (t *refTable) resize(size int) {
	old := t.slots
	t.slots = make([]int32, max(size, minTableSize))
	for _, s := range old {
		if s != 0 {
			t.place(s - 1)
		}
	}
}

// all yields every ref, in no particular order. t must not change
// meanwhile.
func (t *refTable) all(yield func(int32) bool) {
	for _, s := range t.slots {
		if s != 0 && !yield(s-1) {
			return
		}
	}
}

// hashSeed seeds the tables' hashes: a source cannot choose keys that
// collide.
var hashSeed = maphash.MakeSeed()

// slab is a growing array in fixed chunks: growing never copies what it
// holds (a million entries copied at once would briefly hold twice their
// memory and stall the pass that grows it).
type slab[T any] struct {
	chunks [][]T
	n      int
}

const (
	slabBits  = 12
	slabChunk = 1 << slabBits
)

// at returns entry i (i < len).
func (s *slab[T]) at(i int32) *T { return &s.chunks[i>>slabBits][i&(slabChunk-1)] }

// len is the number of entries.
func (s *slab[T]) len() int { return s.n }

// push appends v and returns its index.
func (s *slab[T]) push(v T) int32 {
	if s.n == len(s.chunks)*slabChunk {
		s.chunks = append(s.chunks, make([]T, slabChunk))
	}
	i := int32(s.n)
	s.n++
	*s.at(i) = v
	return i
}
