package node

import (
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// A reload that fails keeps the configuration in force and is counted; a
// good one changes the log level, the protected ranges (and with them the
// detectors' allowlist) and the responders.
func TestReload(t *testing.T) {
	level := new(slog.LevelVar)
	n := startSingleWith(t, Options{LogLevel: level}, nil)
	cfg := n.deps.Config
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	protectedNow := func(p string) bool {
		return slices.Contains(n.state.Protected(), netip.MustParsePrefix(p))
	}

	// A file that does not parse, and one that does not validate.
	if err := n.Reload(func() (Config, error) { return ParseConfig([]byte("log_level: [nope")) }); err == nil {
		t.Fatal("reload of an unparsable config succeeded")
	}
	bad := cfg
	bad.Protected = []string{"198.51.100.0/24", "not-a-prefix"}
	bad.LogLevel = "debug"
	if err := n.Reload(func() (Config, error) { return bad, nil }); err == nil {
		t.Fatal("reload of an invalid config succeeded")
	}
	if st := n.Stats(); st.ReloadFailures != 2 || st.Reloads != 0 {
		t.Fatalf("stats %+v, want 2 reload failures and no reload", st)
	}
	if level.Level() != slog.LevelInfo || protectedNow("198.51.100.0/24") {
		t.Fatalf("a failed reload changed the node: level %v, protected %v", level.Level(), n.state.Protected())
	}
	if err := n.Reload(func() (Config, error) { return Config{}, errors.New("read config: gone") }); err == nil {
		t.Fatal("reload with a failing loader succeeded")
	}

	good := cfg
	good.Protected = []string{"198.51.100.0/24"}
	good.LogLevel = "debug"
	if err := n.Reload(func() (Config, error) { return good, nil }); err != nil {
		t.Fatal(err)
	}
	if st := n.Stats(); st.ReloadFailures != 3 || st.Reloads != 1 {
		t.Fatalf("stats %+v, want 3 reload failures and 1 reload", st)
	}
	if level.Level() != slog.LevelDebug || !protectedNow("198.51.100.0/24") {
		t.Fatalf("reload not applied: level %v, protected %v", level.Level(), n.state.Protected())
	}
	// The detectors allow the newly protected range: the attacker in it
	// is never detected, the one after it is.
	appendLog(t, n.deps.Config.Detectors.Paths[0], bruteForce("solo", "198.51.100.40", 6)...)
	appendLog(t, n.deps.Config.Detectors.Paths[0], bruteForce("solo", "203.0.113.40", 6)...)
	other := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.40"))
	waitFor(t, "the unprotected attacker to be enforced", func() bool { return n.Enforcing(other) })
	if _, ok := n.Timeline(intel.IndicatorFromAddr(netip.MustParseAddr("198.51.100.40"))); ok {
		t.Fatal("an address protected by the reload was detected")
	}

	// Responders: an exec backend replaces the dry-run one, and the new
	// reconciler brings the block to it.
	execOnly := good
	execOnly.Responders.DryRun = false
	execOnly.Responders.Exec = []responders.ExecConfig{{Name: "noop", Add: []string{"true"}, Remove: []string{"true"},
		StatePath: filepath.Join(t.TempDir(), "exec.state")}}
	if err := n.Reload(func() (Config, error) { return execOnly, nil }); err != nil {
		t.Fatal(err)
	}
	if r := n.responders(); r.DryRun != nil || len(r.List) != 1 {
		t.Fatalf("responders after reload: %+v, want the exec backend alone", r)
	}
	waitFor(t, "the exec backend to hold the block", func() bool { return n.Enforcing(other) })
}
