package responders

import "github.com/meshward/meshward/intel"

// Digest summarises a set of indicator keys: how many there are and the
// sum of their hashes. It is kept up to date change by change on both
// sides of a comparison (the reconciler's desired state, a backend's own
// record of what it holds), so that comparing two sets of a million keys
// costs two words: sets that differ have different digests but with a
// chance of about one in 2^64.
type Digest struct {
	N   int
	Sum uint64
}

// Add counts key in.
func (d *Digest) Add(key string) { d.AddHash(KeyHash(key)) }

// Remove counts key out.
func (d *Digest) Remove(key string) { d.RemoveHash(KeyHash(key)) }

// AddHash counts in the key of hash h (KeyHash, KeyHashBytes).
func (d *Digest) AddHash(h uint64) {
	d.N++
	d.Sum += h
}

// RemoveHash counts out the key of hash h.
func (d *Digest) RemoveHash(h uint64) {
	d.N--
	d.Sum -= h
}

// Merge adds the keys counted by o.
func (d *Digest) Merge(o Digest) {
	d.N += o.N
	d.Sum += o.Sum
}

// KeyHash is the 64-bit hash of a key that digests sum: FNV-1a, then
// mixed (the splitmix64 finaliser) so that the sums of similar keys
// spread over every bit.
func KeyHash(key string) uint64 { return keyHash(key) }

// KeyHashBytes is KeyHash of a key held in bytes.
func KeyHashBytes(key []byte) uint64 { return keyHash(key) }

func keyHash[T string | []byte](key T) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// typeDigests are the digests of a set of keys, by indicator type.
type typeDigests map[intel.IndicatorType]*Digest

func (t typeDigests) add(ind intel.Indicator, key string) {
	d := t[ind.Type]
	if d == nil {
		d = &Digest{}
		t[ind.Type] = d
	}
	d.Add(key)
}

func (t typeDigests) remove(ind intel.Indicator, key string) {
	if d := t[ind.Type]; d != nil {
		d.Remove(key)
	}
}
