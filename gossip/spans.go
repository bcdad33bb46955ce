package gossip

import (
	"encoding/binary"
	"slices"
	"sync"
)

// span is an inclusive range of sequence numbers.
type span struct{ Lo, Hi uint64 }

// spans is a sorted set of disjoint, non-adjacent spans.
type spans []span

// add inserts seq, merging neighbours.
func (s spans) add(seq uint64) spans {
	// i is the first span that starts above seq.
	i, _ := slices.BinarySearchFunc(s, seq, func(sp span, v uint64) int {
		if sp.Lo <= v {
			return -1
		}
		return 1
	})
	if i > 0 && s[i-1].Hi >= seq {
		return s // already held
	}
	joinLeft := i > 0 && s[i-1].Hi+1 == seq
	joinRight := i < len(s) && seq+1 == s[i].Lo
	switch {
	case joinLeft && joinRight:
		s[i-1].Hi = s[i].Hi
		return slices.Delete(s, i, i+1)
	case joinLeft:
		s[i-1].Hi = seq
		return s
	case joinRight:
		s[i].Lo = seq
		return s
	}
	return slices.Insert(s, i, span{seq, seq})
}

func (s spans) contains(seq uint64) bool {
	i, _ := slices.BinarySearchFunc(s, seq, func(sp span, v uint64) int {
		if sp.Lo <= v {
			return -1
		}
		return 1
	})
	return i > 0 && s[i-1].Hi >= seq
}

// normalize sorts and merges spans received from a peer, dropping empty
// ones, so that contains can rely on the invariant.
func normalize(in []span) spans {
	out := make(spans, 0, len(in))
	for _, sp := range in {
		if sp.Lo != 0 && sp.Lo <= sp.Hi {
			out = append(out, sp)
		}
	}
	slices.SortFunc(out, func(a, b span) int {
		switch {
		case a.Lo < b.Lo:
			return -1
		case a.Lo > b.Lo:
			return 1
		}
		return 0
	})
	merged := out[:0]
	for _, sp := range out {
		if n := len(merged); n > 0 && (merged[n-1].Hi == ^uint64(0) || sp.Lo <= merged[n-1].Hi+1) {
			merged[n-1].Hi = max(merged[n-1].Hi, sp.Hi)
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// gaps returns the ranges of sequence numbers from 1 to hw that lie in
// none of have: what a peer holding have lacks of an origin whose
// highest stored sequence number is hw. There are at most len(have)+1.
func gaps(have spans, hw uint64) []span {
	var out []span
	next := uint64(1) // the lowest number not yet covered
	for _, sp := range have {
		if next > hw {
			return out
		}
		if sp.Lo > next {
			out = append(out, span{next, min(sp.Lo-1, hw)})
		}
		if sp.Hi == ^uint64(0) {
			return out
		}
		next = max(next, sp.Hi+1)
	}
	if next <= hw {
		out = append(out, span{next, hw})
	}
	return out
}

// holdings is what this node holds, per origin, as sets of spans: the
// summary anti-entropy sends. It is built from the Log once and then kept
// up to date by every envelope the Handler accepts.
type holdings struct {
	mu    sync.Mutex
	built bool
	m     map[string]spans
}

func newHoldings() *holdings { return &holdings{m: make(map[string]spans)} }

func (h *holdings) add(origin string, seq uint64) {
	h.mu.Lock()
	h.m[origin] = h.m[origin].add(seq)
	h.mu.Unlock()
}

func (h *holdings) contains(origin string, seq uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[origin].contains(seq)
}

// build scans log once. Concurrent adds are kept: the result is the union.
func (h *holdings) build(log Log) error {
	h.mu.Lock()
	built := h.built
	h.mu.Unlock()
	if built {
		return nil
	}
	hw, err := log.HighWater()
	if err != nil {
		return err
	}
	for origin := range hw {
		var local spans
		err := log.ScanEnvelopes(origin, 0, func(raw []byte) error {
			if seq, ok := rawSeq(raw); ok {
				local = local.add(seq)
			}
			return nil
		})
		if err != nil {
			return err
		}
		h.mu.Lock()
		for _, sp := range local {
			for seq := sp.Lo; ; seq++ {
				h.m[origin] = h.m[origin].add(seq)
				if seq == sp.Hi {
					break
				}
			}
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.built = true
	h.mu.Unlock()
	return nil
}

// summary returns at most maxSpans spans per origin. When an origin has
// more, the later ones are left out: the peer then sends envelopes we hold,
// which the replay check and the Handler absorb.
func (h *holdings) summary(maxSpans int) map[string][]span {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]span, len(h.m))
	for origin, s := range h.m {
		out[origin] = slices.Clone(s[:min(len(s), maxSpans)])
	}
	return out
}

// rawSeq reads the sequence number of a stored envelope without verifying
// it (intel's wire layout: version, kind, 32-byte origin, then the
// big-endian sequence number at offset 34).
func rawSeq(raw []byte) (uint64, bool) {
	if len(raw) < 42 {
		return 0, false
	}
	return binary.BigEndian.Uint64(raw[34:42]), true
}
