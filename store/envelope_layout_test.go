package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A sighting's record is written once, under its indicator (sgi/); the
// arrival index (rcv/) orders it for Sightings. A store written when
// each record also had an sgt/ copy reads the same, and Prune deletes
// those copies with the rest.
func TestSightingRecordWrittenOnce(t *testing.T) {
	s := openStore(t, DefaultOptions(t.TempDir()))
	k := newKey(t)
	ind := mustIndicator(t, "192.0.2.9")
	put(t, s, sighting(t, k, 1, ind, t0), t0.Add(-time.Hour))
	put(t, s, heartbeat(t, k, 2), t0.Add(-time.Hour))
	put(t, s, sighting(t, k, 3, ind, t0), t0)
	if n, err := s.count(prefixSightTime); err != nil || n != 0 {
		t.Fatalf("%d sgt/ keys written, %v; want none", n, err)
	}
	if n, err := s.count(prefixSightInd); err != nil || n != 2 {
		t.Fatalf("%d sgi/ keys, %v; want 2", n, err)
	}
	// The layout before: every record copied under sgt/.
	recs, err := s.SightingsFor(ind, time.Time{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("SightingsFor: %d records, %v", len(recs), err)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		for _, r := range recs {
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := txn.Set(sightingTimeKey(r.Received, r.Origin, r.Seq), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.Sightings(0)
	if err != nil || len(all) != 2 || all[0].Seq != 3 || all[1].Seq != 1 {
		t.Fatalf("Sightings = %+v, %v; want seqs 3 then 1", all, err)
	}
	if one, err := s.Sightings(1); err != nil || len(one) != 1 || one[0].Seq != 3 {
		t.Fatalf("Sightings(1) = %+v, %v; want seq 3", one, err)
	}
	if all[0].Sighting.Indicator != ind || !all[0].Received.Equal(t0) || all[0].Origin != nodeID(k) {
		t.Fatalf("record %+v", all[0])
	}
	if n, err := s.Prune(t0); err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2", n, err)
	}
	if n, err := s.count(prefixSightTime); err != nil || n != 1 {
		t.Fatalf("%d sgt/ keys after Prune, %v; want the kept sighting's only", n, err)
	}
	if all, err := s.Sightings(0); err != nil || len(all) != 1 || all[0].Seq != 3 {
		t.Fatalf("Sightings after Prune = %+v, %v", all, err)
	}
}
