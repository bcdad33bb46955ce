package store

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// opener opens a store for a test; both implementations of the conformance
// suite are described by one.
type opener struct {
	name string
	open func(t testing.TB) *Store
}

func openers() []opener {
	return []opener{
		{"memory", func(t testing.TB) *Store { return openStore(t, Options{InMemory: true}) }},
		{"disk", func(t testing.TB) *Store { return openStore(t, DefaultOptions(t.TempDir())) }},
	}
}

func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// testLogger sends warnings and errors to the test log, so that they show
// only when a test fails.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func nodeID(k ed25519.PrivateKey) string { return intel.NodeID(k.Public().(ed25519.PublicKey)) }

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func mustIndicator(t testing.TB, s string) intel.Indicator {
	t.Helper()
	ind, err := intel.ParseIndicator(s)
	if err != nil {
		t.Fatal(err)
	}
	return ind
}

// sighting seals and opens a sighting of ind, last seen at lastSeen.
func sighting(t testing.TB, k ed25519.PrivateKey, seq uint64, ind intel.Indicator, lastSeen time.Time) *intel.Envelope {
	t.Helper()
	s := intel.Sighting{
		Indicator:  ind,
		Detector:   "ssh-bruteforce",
		Technique:  "T1110.001",
		Severity:   intel.SeverityHigh,
		Confidence: 80,
		Count:      5,
		FirstSeen:  lastSeen.Add(-time.Minute),
		LastSeen:   lastSeen,
	}
	return seal(t, k, intel.KindSighting, seq, lastSeen.Add(time.Second), s)
}

func seal(t testing.TB, k ed25519.PrivateKey, kind intel.Kind, seq uint64, ts time.Time, v any) *intel.Envelope {
	t.Helper()
	raw, err := intel.SealJSON(k, kind, seq, ts, v)
	if err != nil {
		t.Fatal(err)
	}
	env, err := intel.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func heartbeat(t testing.TB, k ed25519.PrivateKey, seq uint64) *intel.Envelope {
	return seal(t, k, intel.KindHeartbeat, seq, t0, map[string]string{"hello": "mesh"})
}

func put(t testing.TB, s *Store, env *intel.Envelope, received time.Time) bool {
	t.Helper()
	added, err := s.PutEnvelope(env, received)
	if err != nil {
		t.Fatalf("put envelope %d: %v", env.Seq, err)
	}
	return added
}
