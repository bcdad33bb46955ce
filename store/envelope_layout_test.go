package store

import (
	"bytes"
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

// The arrival index (rcv/) of a sighting holds its record's key without
// the origin and sequence number its own key ends with; an index written
// by earlier versions, with the whole key, reads and prunes the same.
func TestArrivalIndexNamesRecord(t *testing.T) {
	s := openStore(t, DefaultOptions(t.TempDir()))
	k := newKey(t)
	ind := mustIndicator(t, "192.0.2.11")
	put(t, s, sighting(t, k, 1, ind, t0), t0.Add(-time.Hour))
	put(t, s, sighting(t, k, 2, ind, t0), t0.Add(-time.Minute))
	put(t, s, sighting(t, k, 3, ind, t0.Add(time.Second)), t0)
	origin := nodeID(k)
	rcv := receivedKey(t0.Add(-time.Hour), origin, 1)
	full := sightingIndKey(ind.Key(), t0, origin, 1)
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(rcv)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if want := full[:len(full)-1-len(origin)-8]; !bytes.Equal(v, want) {
			t.Errorf("arrival index value %q, want %q", v, want)
		}
		// As earlier versions wrote it.
		return txn.Set(rcv, full)
	})
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.Sightings(0)
	if err != nil || len(all) != 3 || all[0].Seq != 3 || all[1].Seq != 2 || all[2].Seq != 1 {
		t.Fatalf("Sightings = %+v, %v; want seqs 3, 2, 1", all, err)
	}
	if n, err := s.Prune(t0.Add(-time.Second)); err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2", n, err)
	}
	if n, err := s.count(prefixSightInd); err != nil || n != 1 {
		t.Fatalf("%d sgi/ keys after Prune, %v; want 1", n, err)
	}
}

// A value of the arrival index that names no record of its envelope is an
// error, never another record.
func TestSightingKeyOfMalformed(t *testing.T) {
	full := sightingIndKey("ipv4:192.0.2.1", t0, "origin-a", 7)
	short := full[:len(full)-1-len("origin-a")-8]
	if k, err := sightingKeyOf(short, "origin-a", 7); err != nil || !bytes.Equal(k, full) {
		t.Fatalf("sightingKeyOf(short) = %q, %v", k, err)
	}
	if k, err := sightingKeyOf(full, "origin-a", 7); err != nil || !bytes.Equal(k, full) {
		t.Fatalf("sightingKeyOf(full) = %q, %v", k, err)
	}
	for name, tc := range map[string]struct {
		v      []byte
		origin string
		seq    uint64
	}{
		"other seq":    {full, "origin-a", 8},
		"other origin": {full, "origin-b", 7},
		"cut":          {short[:len(short)-1], "origin-a", 7},
		"longer":       {append(bytes.Clone(short), 0), "origin-a", 7},
		"prefix":       {append([]byte("sgt/"), short[4:]...), "origin-a", 7},
		"empty":        {nil, "origin-a", 7},
	} {
		if k, err := sightingKeyOf(tc.v, tc.origin, tc.seq); err == nil {
			t.Errorf("%s: sightingKeyOf = %q, want an error", name, k)
		}
	}
}
