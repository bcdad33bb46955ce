package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/meshward/meshward/intel"
)

// SightingRecord is a stored sighting with where and when it came from.
type SightingRecord struct {
	Origin   string         // node ID of the signer
	Seq      uint64         // the envelope's per-origin sequence number
	Sighting intel.Sighting // the decoded payload
	Received time.Time      // when this node stored it
	Sent     time.Time      // the envelope's timestamp (env.Time)
}

// PutEnvelope stores env.Raw verbatim under its origin and sequence number,
// and for a sighting also indexes it by indicator and arrival time, all in
// one transaction. It returns added=false and no error when an envelope
// with that origin and sequence number is already stored, whatever its
// bytes: the first one stored wins.
//
// Concurrent calls share transactions (group commit, group.go): the
// envelope is written with those of other callers waiting at the same
// time, in one write and one sync, and PutEnvelope returns only once that
// transaction is committed (and, with SyncWrites, on disk).
//
// env must come from intel.Open (or be equally well formed); a sighting
// whose payload does not decode is refused.
func (s *Store) PutEnvelope(env *intel.Envelope, received time.Time) (added bool, err error) {
	w, err := newEnvelopeWrite(env, received)
	if err != nil {
		return false, err
	}
	if err := s.acquire(); err != nil {
		return false, fmt.Errorf("put envelope %s/%d: %w", w.origin, w.seq, err)
	}
	defer s.release()
	r := &putReq{one: [1]envelopeWrite{w}}
	r.writes = r.one[:]
	s.group.submit(r)
	w = r.writes[0]
	if w.err != nil {
		return false, wrap(fmt.Sprintf("put envelope %s/%d", w.origin, w.seq), w.err)
	}
	return w.added, nil
}

// PutEnvelopes stores envs as PutEnvelope stores each, in order, in the
// same group: an envelope with the origin and sequence number of an
// earlier one (stored before or earlier in envs) is not added. It returns
// whether each envelope was added. An envelope that is not well formed
// fails the call before anything is stored; otherwise the error joins
// those of the envelopes that could not be written, and added tells which
// ones were.
func (s *Store) PutEnvelopes(envs []*intel.Envelope, received time.Time) (added []bool, err error) {
	r := &putReq{writes: make([]envelopeWrite, len(envs))}
	for i, env := range envs {
		if r.writes[i], err = newEnvelopeWrite(env, received); err != nil {
			return nil, fmt.Errorf("envelope %d of %d: %w", i+1, len(envs), err)
		}
	}
	if err := s.acquire(); err != nil {
		return nil, fmt.Errorf("put %d envelopes: %w", len(envs), err)
	}
	defer s.release()
	if len(envs) > 0 {
		s.group.submit(r)
	}
	added = make([]bool, len(envs))
	var errs []error
	for i, w := range r.writes {
		added[i] = w.added
		if w.err != nil {
			errs = append(errs, wrap(fmt.Sprintf("put envelope %s/%d", w.origin, w.seq), w.err))
		}
	}
	return added, errors.Join(errs...)
}

// newEnvelopeWrite checks env and computes its keys and values.
func newEnvelopeWrite(env *intel.Envelope, received time.Time) (envelopeWrite, error) {
	if env == nil || len(env.Raw) == 0 {
		return envelopeWrite{}, errors.New("put envelope: empty envelope")
	}
	origin := env.OriginID()
	if err := checkOrigin(origin); err != nil {
		return envelopeWrite{}, fmt.Errorf("put envelope: %w", err)
	}
	if env.Seq == 0 {
		return envelopeWrite{}, fmt.Errorf("put envelope %s: sequence number 0", origin)
	}
	var sg intel.Sighting
	var indKey string
	if env.Kind == intel.KindSighting {
		var err error
		if sg, err = intel.DecodeSighting(env); err != nil {
			return envelopeWrite{}, fmt.Errorf("put envelope %s/%d: %w", origin, env.Seq, err)
		}
		indKey = sg.Indicator.Key()
	}
	// The keys (as envelopeKey, highWaterKey, receivedKey and
	// sightingIndKey build them) are cut from one buffer of their total
	// size.
	n := len(prefixEnvelope) + len(prefixHighWater) + len(prefixReceived) + 3*len(origin) + 2 + 3*8
	if env.Kind == intel.KindSighting {
		n += len(prefixSightInd) + 2 + len(indKey) + 8 + 1 + len(origin) + 8
	}
	kb := make([]byte, 0, n)
	cut := func(start int) []byte { return kb[start:len(kb):len(kb)] }
	w := envelopeWrite{origin: origin, seq: env.Seq, raw: env.Raw}
	start := len(kb)
	kb = appendUint64(appendOrigin(append(kb, prefixEnvelope...), origin), env.Seq)
	w.key = cut(start)
	start = len(kb)
	kb = append(append(kb, prefixHighWater...), origin...)
	w.hwKey = cut(start)
	start = len(kb)
	kb = appendUint64(appendOrigin(appendTime(append(kb, prefixReceived...), received), origin), env.Seq)
	w.rcvKey = cut(start)
	if env.Kind == intel.KindSighting {
		rec := SightingRecord{Origin: origin, Seq: env.Seq, Sighting: sg, Received: received.UTC(), Sent: env.Time.UTC()}
		var err error
		if w.sightVal, err = encodeRecord(&rec); err != nil {
			return envelopeWrite{}, fmt.Errorf("put envelope %s/%d: encode sighting: %w", origin, env.Seq, err)
		}
		// The arrival index (rcv/, whose value is this key) orders the
		// sightings by arrival for Sightings: the record is written once.
		start = len(kb)
		kb = binary.BigEndian.AppendUint16(append(kb, prefixSightInd...), uint16(len(indKey)))
		kb = appendUint64(appendOrigin(appendTime(append(kb, indKey...), sg.LastSeen), origin), env.Seq)
		w.indKey = cut(start)
		w.sightKeys = [][]byte{w.indKey}
		// The arrival index names the record without the origin and
		// sequence number its own key ends with (sightingKeyOf).
		w.rcvVal = w.indKey[:len(w.indKey)-1-len(origin)-8]
	}
	return w, nil
}

// GetEnvelope returns the stored bytes of one envelope, or ErrNotFound.
func (s *Store) GetEnvelope(origin string, seq uint64) ([]byte, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, fmt.Errorf("get envelope: %w", err)
	}
	var raw []byte
	err := s.view(func(txn *badger.Txn) error {
		it, err := txn.Get(envelopeKey(origin, seq))
		if err != nil {
			return err
		}
		raw, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, wrap(fmt.Sprintf("get envelope %s/%d", origin, seq), err)
	}
	return raw, nil
}

// HighWater returns, for every origin with an envelope stored, the highest
// sequence number stored. Lower numbers may be missing; anti-entropy asks
// for what lies above a peer's mark.
func (s *Store) HighWater() (map[string]uint64, error) {
	out := make(map[string]uint64)
	err := s.view(func(txn *badger.Txn) error {
		return scan{prefix: prefixHighWater}.each(txn, func(item *badger.Item) error {
			origin := string(item.Key()[len(prefixHighWater):])
			return item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("high-water mark of %s is %d bytes", origin, len(v))
				}
				out[origin] = binary.BigEndian.Uint64(v)
				return nil
			})
		})
	})
	if err != nil {
		return nil, wrap("read high-water marks", err)
	}
	return out, nil
}

// ScanEnvelopes calls fn with every stored envelope of origin whose
// sequence number is above afterSeq, in sequence order. raw is a copy that
// fn may keep. An error from fn stops the scan and is returned as is.
func (s *Store) ScanEnvelopes(origin string, afterSeq uint64, fn func(raw []byte) error) error {
	if err := checkOrigin(origin); err != nil {
		return fmt.Errorf("scan envelopes: %w", err)
	}
	if afterSeq == ^uint64(0) {
		return nil
	}
	var fnErr error
	sc := scan{prefix: envelopePrefix(origin), start: envelopeKey(origin, afterSeq+1), prefetch: 16}
	err := s.view(func(txn *badger.Txn) error {
		return sc.each(txn, func(item *badger.Item) error {
			raw, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(raw); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return wrap("scan envelopes of "+origin, err)
}

// CountEnvelopes returns how many envelopes are stored. It walks the keys,
// so it costs time proportional to the count.
func (s *Store) CountEnvelopes() (int, error) {
	n, err := s.count(prefixEnvelope)
	return n, wrap("count envelopes", err)
}

// SightingsFor returns the stored sightings of ind whose LastSeen is at or
// after since, oldest LastSeen first. The indicator must be canonical
// (intel.NewIndicator), as sightings are.
func (s *Store) SightingsFor(ind intel.Indicator, since time.Time) ([]SightingRecord, error) {
	prefix := indicatorPrefix(ind.Key())
	sc := scan{prefix: prefix, start: appendTime(join(prefix), since)}
	out, err := collect(s, sc, 0, decodeSightingRecord)
	return out, wrap("read sightings of "+ind.Key(), err)
}

// Sightings returns up to limit stored sightings, most recently received
// first. limit <= 0 means all of them. It walks the arrival index (rcv/),
// whose value for a sighting names the key of its record (sgi/,
// sightingKeyOf); stores
// written before that index was the only one also hold an sgt/ copy of
// each record, which nothing reads and Prune deletes.
func (s *Store) Sightings(limit int) ([]SightingRecord, error) {
	var out []SightingRecord
	sc := scan{prefix: prefixReceived, reverse: true, prefetch: max(limit, 0)}
	err := s.view(func(txn *badger.Txn) error {
		return sc.each(txn, func(item *badger.Item) error {
			if limit > 0 && len(out) >= limit {
				return errStop
			}
			var rec []byte
			err := item.Value(func(v []byte) error {
				if len(v) == 0 {
					return nil // not a sighting
				}
				_, origin, seq, err := parseReceivedKey(item.Key())
				if err != nil {
					return err
				}
				rec, err = sightingKeyOf(v, origin, seq)
				return err
			})
			if err != nil || rec == nil {
				return err
			}
			it, err := txn.Get(rec)
			if err != nil {
				return fmt.Errorf("sighting record %q of %q: %w", rec, item.Key(), err)
			}
			r, err := decodeSightingRecord(it)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, wrap("read sightings", err)
	}
	return out, nil
}

func decodeSightingRecord(item *badger.Item) (SightingRecord, error) {
	var rec SightingRecord
	err := item.Value(func(v []byte) error {
		var err error
		rec, err = decodeRecord(item.Key(), v)
		return err
	})
	if err != nil {
		return rec, fmt.Errorf("decode sighting record %q: %w", item.Key(), err)
	}
	return rec, nil
}

// getUint64 reads an 8-byte big-endian value; a missing key reads as 0.
func getUint64(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("value of %q is %d bytes, want 8", key, len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

// pruneChunk is how many envelopes Prune deletes per transaction.
const pruneChunk = 512

// Prune deletes the envelopes received before cutoff, with their sighting
// index entries, and returns how many it deleted. High-water marks are
// kept, so anti-entropy does not fetch pruned envelopes again. It runs in
// several transactions; an interrupted Prune leaves a consistent store and
// can simply be run again.
func (s *Store) Prune(cutoff time.Time) (int, error) {
	end := appendTime(join(prefixReceived), cutoff)
	n, err := s.prune(scan{prefix: prefixReceived}, pruneChunk, func(item *badger.Item) ([][]byte, bool, error) {
		if bytes.Compare(item.Key(), end) >= 0 {
			return nil, true, nil
		}
		rcv := item.KeyCopy(nil)
		ind, err := item.ValueCopy(nil)
		if err != nil {
			return nil, false, err
		}
		suffix, origin, seq, err := parseReceivedKey(rcv)
		if err != nil {
			return nil, false, err
		}
		keys := [][]byte{rcv, envelopeKey(origin, seq)}
		if len(ind) > 0 {
			if ind, err = sightingKeyOf(ind, origin, seq); err != nil {
				return nil, false, err
			}
			keys = append(keys, ind, join(prefixSightTime, suffix))
		}
		return keys, false, nil
	}, s.deleteKeys)
	return n, wrap("prune envelopes", err)
}
