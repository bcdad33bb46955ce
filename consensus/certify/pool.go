package certify

import (
	"bytes"
	"slices"
	"sync"
)

// Pool keeps the latest certificate of each signer: a certificate for
// index k vouches for every entry up to k, so an older one adds nothing.
// A server keeps one of the voters' certificates it heard on the
// servers' topic (so that the leader can publish them with the entries,
// and any server can hand a majority's to an edge that catches up), and
// one of those it saw reach the edges' topic (to tell whether its own
// went unpublished). It checks nothing: callers add only certificates
// they verified. Safe for concurrent use; bounded by 4 × MaxVoters
// signers (the lowest-indexed are dropped for room).
type Pool struct {
	mu     sync.Mutex
	latest map[string]Cert
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{latest: map[string]Cert{}} }

// Add keeps c if it is the signer's latest; it reports whether it was.
func (p *Pool) Add(c Cert) bool {
	id := c.SignerID()
	if id == "" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.latest[id]; ok && old.Index >= c.Index {
		return false
	}
	if _, ok := p.latest[id]; !ok && len(p.latest) >= 4*MaxVoters {
		low := ""
		for k, v := range p.latest {
			if low == "" || v.Index < p.latest[low].Index {
				low = k
			}
		}
		delete(p.latest, low)
	}
	p.latest[id] = c
	return true
}

// Has reports whether the pool holds c itself (same signer, index and
// signature): a caller that added only checked certificates need not
// check it again.
func (p *Pool) Has(c *Cert) bool {
	id := c.SignerID()
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.latest[id]
	return ok && h.Index == c.Index && h.Hash == c.Hash && h.Term == c.Term && h.Mesh == c.Mesh && bytes.Equal(h.Sig, c.Sig)
}

// Certs returns the latest certificate of each voter in voters that the
// pool holds, in voter order.
func (p *Pool) Certs(voters Voters) []Cert {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Cert
	for _, v := range voters {
		if c, ok := p.latest[v]; ok {
			out = append(out, c)
		}
	}
	return out
}

// Covered is the highest index that a majority of voters' certificates
// in the pool reach: an edge given them applies up to there (0: none).
func (p *Pool) Covered(voters Voters) uint64 {
	return Covered(p.Certs(voters), voters)
}

// Covered is the highest index that certificates of a majority of voters
// among certs reach (the latest of each signer counts; 0: none).
func Covered(certs []Cert, voters Voters) uint64 {
	if len(voters) == 0 {
		return 0
	}
	best := map[string]uint64{}
	for i := range certs {
		if id := certs[i].SignerID(); voters.Contains(id) && certs[i].Index > best[id] {
			best[id] = certs[i].Index
		}
	}
	idx := make([]uint64, 0, len(best))
	for _, v := range best {
		idx = append(idx, v)
	}
	if len(idx) < voters.Majority() {
		return 0
	}
	slices.Sort(idx)
	slices.Reverse(idx)
	return idx[voters.Majority()-1]
}
