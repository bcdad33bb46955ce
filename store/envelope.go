package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
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
// env must come from intel.Open (or be equally well formed); a sighting
// whose payload does not decode is refused.
func (s *Store) PutEnvelope(env *intel.Envelope, received time.Time) (added bool, err error) {
	if env == nil || len(env.Raw) == 0 {
		return false, errors.New("put envelope: empty envelope")
	}
	origin := env.OriginID()
	if err := checkOrigin(origin); err != nil {
		return false, fmt.Errorf("put envelope: %w", err)
	}
	if env.Seq == 0 {
		return false, errors.New("put envelope: sequence number 0")
	}
	var sightKeys [][]byte
	var sightVal, indKey []byte
	if env.Kind == intel.KindSighting {
		sg, err := intel.DecodeSighting(env)
		if err != nil {
			return false, fmt.Errorf("put envelope %s/%d: %w", origin, env.Seq, err)
		}
		rec := SightingRecord{Origin: origin, Seq: env.Seq, Sighting: sg, Received: received.UTC(), Sent: env.Time.UTC()}
		if sightVal, err = json.Marshal(rec); err != nil {
			return false, fmt.Errorf("put envelope %s/%d: encode sighting: %w", origin, env.Seq, err)
		}
		indKey = sightingIndKey(sg.Indicator.Key(), sg.LastSeen, origin, env.Seq)
		sightKeys = [][]byte{indKey, sightingTimeKey(received, origin, env.Seq)}
	}
	key := envelopeKey(origin, env.Seq)
	hwKey := highWaterKey(origin)
	rcvKey := receivedKey(received, origin, env.Seq)
	err = s.write(func(txn *badger.Txn) error {
		added = false
		switch _, err := txn.Get(key); {
		case err == nil:
			return nil
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		if err := txn.Set(key, env.Raw); err != nil {
			return err
		}
		if err := txn.Set(rcvKey, indKey); err != nil {
			return err
		}
		hw, err := getUint64(txn, hwKey)
		if err != nil {
			return err
		}
		if env.Seq > hw {
			if err := txn.Set(hwKey, appendUint64(nil, env.Seq)); err != nil {
				return err
			}
		}
		for _, k := range sightKeys {
			if err := txn.Set(k, sightVal); err != nil {
				return err
			}
		}
		added = true
		return nil
	})
	if err != nil {
		return false, wrap(fmt.Sprintf("put envelope %s/%d", origin, env.Seq), err)
	}
	return added, nil
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
// first. limit <= 0 means all of them.
func (s *Store) Sightings(limit int) ([]SightingRecord, error) {
	return list(s, "sightings", prefixSightTime, true, limit, decodeSightingRecord)
}

func decodeSightingRecord(item *badger.Item) (SightingRecord, error) {
	var rec SightingRecord
	err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) })
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
			keys = append(keys, ind, join(prefixSightTime, suffix))
		}
		return keys, false, nil
	}, s.deleteKeys)
	return n, wrap("prune envelopes", err)
}
