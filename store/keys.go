package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Key layout. Every family has its own prefix, and every integer is
// big-endian so that a prefix scan visits keys in numeric order. Strings
// inside keys are length-prefixed, so no prefix of one family member is a
// prefix of another.
//
//	env/  <origin> <seq>                        -> envelope Raw
//	hw/   <origin>                              -> highest seq stored (8 bytes)
//	sgi/  <indicator key> <last seen> <origin> <seq> -> SightingRecord, compact
//	                                               or JSON (sighting_record.go)
//	sgt/  <received> <origin> <seq>             -> SightingRecord (JSON); written
//	                                               by earlier versions only, read by
//	                                               nothing, deleted by Prune
//	rcv/  <received> <origin> <seq>             -> its sgi/ key without <origin> <seq>
//	                                               (earlier versions: with them), or empty
//	meta/seq                                    -> last sequence number handed out
//	dec/  <policy id>                           -> intel.Policy (JSON)
//	raft/log/    <index>                        -> encoded raft.Log
//	raft/stable/ <key>                          -> value
//	tok/  <token id>                            -> TokenRecord (hash only; tokens.go)
//	aud/  <time> <n>                            -> AuditRecord (audit.go)
//	ack/  <detection id>                        -> AckRecord (acks.go)
//	qe/ qi/ qs/  <queue name> ...               -> durable delivery queues (queue.go)
//
// <origin> is a one-byte length and the node ID; <indicator key> a two-byte
// length and intel.Indicator.Key(); times are Unix nanoseconds with the
// sign bit flipped, so that they sort in time order.
var (
	prefixEnvelope   = []byte("env/")
	prefixHighWater  = []byte("hw/")
	prefixSightInd   = []byte("sgi/")
	prefixSightTime  = []byte("sgt/")
	prefixReceived   = []byte("rcv/")
	keySeq           = []byte("meta/seq")
	prefixDecision   = []byte("dec/")
	prefixRaftLog    = []byte("raft/log/")
	prefixRaftStable = []byte("raft/stable/")
)

const maxOriginLen = 255

var errBadOrigin = errors.New("origin must be 1 to 255 bytes")

func checkOrigin(origin string) error {
	if len(origin) == 0 || len(origin) > maxOriginLen {
		return fmt.Errorf("%w, got %d", errBadOrigin, len(origin))
	}
	return nil
}

func join(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func appendOrigin(b []byte, origin string) []byte {
	b = append(b, byte(len(origin)))
	return append(b, origin...)
}

func appendUint64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// appendTime encodes t so that byte order is time order, including times
// before 1970.
func appendTime(b []byte, t time.Time) []byte {
	return appendUint64(b, uint64(t.UnixNano())^(1<<63))
}

// envelopePrefix is the prefix of all envelopes of one origin.
func envelopePrefix(origin string) []byte {
	return appendOrigin(join(prefixEnvelope), origin)
}

func envelopeKey(origin string, seq uint64) []byte {
	return appendUint64(envelopePrefix(origin), seq)
}

func highWaterKey(origin string) []byte {
	return join(prefixHighWater, []byte(origin))
}

// indicatorPrefix is the prefix of all sightings of one indicator key.
func indicatorPrefix(indKey string) []byte {
	b := join(prefixSightInd)
	b = binary.BigEndian.AppendUint16(b, uint16(len(indKey)))
	return append(b, indKey...)
}

func sightingIndKey(indKey string, lastSeen time.Time, origin string, seq uint64) []byte {
	b := appendTime(indicatorPrefix(indKey), lastSeen)
	b = appendOrigin(b, origin)
	return appendUint64(b, seq)
}

func sightingTimeKey(received time.Time, origin string, seq uint64) []byte {
	b := appendTime(join(prefixSightTime), received)
	b = appendOrigin(b, origin)
	return appendUint64(b, seq)
}

func receivedKey(received time.Time, origin string, seq uint64) []byte {
	b := appendTime(join(prefixReceived), received)
	b = appendOrigin(b, origin)
	return appendUint64(b, seq)
}

// parseReceivedKey splits a rcv/ key into its parts.
func parseReceivedKey(k []byte) (suffix []byte, origin string, seq uint64, err error) {
	suffix = k[len(prefixReceived):]
	if len(suffix) < 8+1+8 || len(suffix) != 8+1+int(suffix[8])+8 {
		return nil, "", 0, fmt.Errorf("malformed received key %q", k)
	}
	origin = string(suffix[9 : 9+int(suffix[8])])
	seq = binary.BigEndian.Uint64(suffix[len(suffix)-8:])
	return suffix, origin, seq, nil
}

// parseSightingIndKey returns the origin and sequence number at the end
// of an sgi/ key.
func parseSightingIndKey(k []byte) (origin string, seq uint64, err error) {
	rest, ok := bytes.CutPrefix(k, prefixSightInd)
	if !ok || len(rest) < 2 {
		return "", 0, fmt.Errorf("malformed sighting key %q", k)
	}
	// <indicator key> <last seen> <origin> <seq>
	n := 2 + int(binary.BigEndian.Uint16(rest)) + 8
	if len(rest) < n+1 || len(rest) != n+1+int(rest[n])+8 {
		return "", 0, fmt.Errorf("malformed sighting key %q", k)
	}
	return string(rest[n+1 : len(rest)-8]), binary.BigEndian.Uint64(rest[len(rest)-8:]), nil
}

// sightingKeyOf returns the sgi/ key that v, the value of the rcv/ key
// of origin's envelope seq, names: v is that key without the origin and
// sequence number, which the rcv/ key holds, or, as earlier versions wrote
// it, the whole key.
func sightingKeyOf(v []byte, origin string, seq uint64) ([]byte, error) {
	rest, ok := bytes.CutPrefix(v, prefixSightInd)
	if !ok || len(rest) < 2 {
		return nil, fmt.Errorf("malformed arrival index value %q", v)
	}
	n := len(prefixSightInd) + 2 + int(binary.BigEndian.Uint16(rest)) + 8
	switch len(v) {
	case n:
		k := make([]byte, 0, n+1+len(origin)+8)
		return appendUint64(appendOrigin(append(k, v...), origin), seq), nil
	case n + 1 + len(origin) + 8:
		if o, q, err := parseSightingIndKey(v); err != nil || o != origin || q != seq {
			return nil, fmt.Errorf("arrival index of %s/%d names the sighting %q", origin, seq, v)
		}
		return bytes.Clone(v), nil
	}
	return nil, fmt.Errorf("malformed arrival index value %q", v)
}

func decisionKey(id string) []byte { return join(prefixDecision, []byte(id)) }

func raftLogKey(index uint64) []byte { return appendUint64(join(prefixRaftLog), index) }

func raftStableKey(k []byte) []byte { return join(prefixRaftStable, k) }

// maxSuffix is longer than the part after its family prefix of any key.
const maxSuffix = 8 + 1 + maxOriginLen + 8 + 16

// reverseSeekKey is the key to Seek a reverse iterator to, so that it lands
// on the last key with prefix p: a reverse Seek finds the largest key at
// most its argument, and p followed by 0xff bytes is above them all.
func reverseSeekKey(p []byte) []byte {
	b := make([]byte, len(p), len(p)+maxSuffix)
	copy(b, p)
	for range maxSuffix {
		b = append(b, 0xff)
	}
	return b
}
