package intel

import (
	"bytes"
	"testing"
	"time"
)

// A partial summary travels in the sighting envelope unchanged; a full
// sighting's bytes do not name the field, so nodes that predate it read
// full sightings as before.
func TestSightingPartialRoundTrip(t *testing.T) {
	k := testKey(t)
	full := testSighting()
	b, err := SealJSON(k, KindSighting, 1, full.LastSeen, full)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`"partial"`)) {
		t.Fatalf("a full sighting names the partial field: %s", b)
	}
	part := testSighting()
	part.Partial, part.Count = true, 2
	b, err = SealJSON(k, KindSighting, 2, part.LastSeen.Add(time.Second), part)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"partial":true`)) {
		t.Fatalf("a partial summary does not say so: %s", b)
	}
	e, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSightingAt(e, SightingSkew)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Partial || got.Count != 2 {
		t.Fatalf("decoded %+v, want a partial of count 2", got)
	}
}
