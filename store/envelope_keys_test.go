package store

import (
	"bytes"
	"testing"
	"time"
)

// The keys of an envelope write, cut from one buffer, are the ones the
// key functions build, and none can run into another.
func TestEnvelopeWriteKeys(t *testing.T) {
	k := newKey(t)
	origin := nodeID(k)
	received := t0.Add(1234567 * time.Nanosecond)
	ind := mustIndicator(t, "192.0.2.7")
	w, err := newEnvelopeWrite(sighting(t, k, 7, ind, t0.Add(-time.Minute)), received)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"envelope", w.key, envelopeKey(origin, 7)},
		{"high-water", w.hwKey, highWaterKey(origin)},
		{"received", w.rcvKey, receivedKey(received, origin, 7)},
		{"indicator", w.indKey, sightingIndKey(ind.Key(), t0.Add(-time.Minute), origin, 7)},
	} {
		if !bytes.Equal(c.got, c.want) || cap(c.got) != len(c.got) {
			t.Errorf("%s key %q (cap %d), want %q", c.name, c.got, cap(c.got), c.want)
		}
	}
	if len(w.sightKeys) != 1 || !bytes.Equal(w.sightKeys[0], w.indKey) {
		t.Errorf("sighting keys %q", w.sightKeys)
	}
	h, err := newEnvelopeWrite(heartbeat(t, k, 8), received)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.key, envelopeKey(origin, 8)) || !bytes.Equal(h.rcvKey, receivedKey(received, origin, 8)) ||
		!bytes.Equal(h.hwKey, highWaterKey(origin)) || h.indKey != nil || h.sightKeys != nil {
		t.Errorf("heartbeat keys %q %q %q %q", h.key, h.rcvKey, h.hwKey, h.indKey)
	}
}
