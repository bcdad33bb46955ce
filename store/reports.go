package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/meshward/meshward/intel"
)

// ReportRecord is a stored indicator report (an intel.KindIndicator
// envelope) with where and when it came from.
type ReportRecord struct {
	Origin   string // node ID of the signer
	Seq      uint64 // the envelope's per-origin sequence number
	Report   intel.IndicatorReport
	Received time.Time // when this node stored it
	Sent     time.Time // the envelope's timestamp (env.Time)
}

// IndicatorReports returns up to limit stored indicator reports, most
// recently received first; limit <= 0 means all of them. Reports need no
// index of their own: PutEnvelope stores them with an empty entry in the
// arrival index (rcv/), and Prune removes them with their envelopes. The
// read walks the arrival index newest first, skipping sightings by their
// value size without reading them, so it costs one key visit per envelope
// received since the limit-th newest report, and one envelope read and
// signature check per report returned.
func (s *Store) IndicatorReports(limit int) ([]ReportRecord, error) {
	var out []ReportRecord
	err := s.view(func(txn *badger.Txn) error {
		return scan{prefix: prefixReceived, reverse: true, keysOnly: true}.each(txn, func(item *badger.Item) error {
			if limit > 0 && len(out) >= limit {
				return errStop
			}
			if item.ValueSize() != 0 {
				return nil // a sighting: its value is its index key
			}
			rec, ok, err := readReport(txn, item.Key())
			if err != nil {
				return err
			}
			if ok {
				out = append(out, rec)
			}
			return nil
		})
	})
	if err != nil {
		return nil, wrap("read indicator reports", err)
	}
	return out, nil
}

// readReport reads the envelope an arrival key names and decodes it if it
// is an indicator report; ok is false for other kinds.
func readReport(txn *badger.Txn, rcvKey []byte) (rec ReportRecord, ok bool, err error) {
	suffix, origin, seq, err := parseReceivedKey(rcvKey)
	if err != nil {
		return rec, false, err
	}
	item, err := txn.Get(envelopeKey(origin, seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return rec, false, nil // pruned under us; the arrival entry goes next
	}
	if err != nil {
		return rec, false, err
	}
	raw, err := item.ValueCopy(nil)
	if err != nil {
		return rec, false, err
	}
	if len(raw) < 2 || intel.Kind(raw[1]) != intel.KindIndicator {
		return rec, false, nil
	}
	env, err := intel.Open(raw)
	if err != nil {
		return rec, false, fmt.Errorf("envelope %s/%d: %w", origin, seq, err)
	}
	r, err := intel.DecodeIndicatorReport(env)
	if err != nil {
		return rec, false, fmt.Errorf("envelope %s/%d: %w", origin, seq, err)
	}
	received := time.Unix(0, int64(binary.BigEndian.Uint64(suffix[:8])^(1<<63))).UTC()
	return ReportRecord{Origin: origin, Seq: seq, Report: r, Received: received, Sent: env.Time.UTC()}, true, nil
}
