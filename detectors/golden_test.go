package detectors

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

var update = flag.Bool("update", false, "rewrite golden files")

// replayOptions are the engine options of the replay cases: the log's
// own management network is allowed.
func replayOptions() EngineOptions {
	return EngineOptions{Now: fixedNow, Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
}

// render writes sightings and stats as the golden file holds them.
func render(t *testing.T, sightings []intel.Sighting, st EngineStats) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, s := range sightings {
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Encode(st); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("output differs from %s (run with -update after checking):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestReplayGolden feeds a realistic auth.log (invalid users, IPv6,
// sshd-session, an injected address in a user name, bad UTF-8, a cut
// line, an allowed bastion) through the default SSH rule.
func TestReplayGolden(t *testing.T) {
	dir := filepath.Join("testdata", "replay")
	f, err := os.Open(filepath.Join(dir, "auth.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := newTestEngine(t, DefaultSSHRule(), replayOptions())
	var got []intel.Sighting
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s, ok := e.Feed(sc.Text()); ok {
			if err := s.Validate(); err != nil {
				t.Errorf("invalid sighting %+v: %v", s, err)
			}
			got = append(got, s)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, filepath.Join(dir, "sightings.golden"), render(t, got, e.Stats()))
}

// TestReplayThroughFileSource runs the same log through FileSource and
// Run: the pipeline must see exactly what the engine alone saw.
func TestReplayThroughFileSource(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "replay", "auth.log"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth.log")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newTestEngine(t, DefaultSSHRule(), replayOptions())
	src := &FileSource{Path: path, FromStart: true, PollInterval: 2 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var got []intel.Sighting
	done := make(chan error, 1)
	go func() { done <- Run(ctx, src, e, func(s intel.Sighting) { got = append(got, s) }) }()
	lines := uint64(strings.Count(string(data), "\n"))
	waitUntil(t, "all lines fed", func() bool { return e.Stats().Lines == lines })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkGolden(t, filepath.Join("testdata", "replay", "sightings.golden"), render(t, got, e.Stats()))
}
