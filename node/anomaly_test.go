package node

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel"
)

// anomalyDetectors builds a node's detectors with the shipped example
// anomaly rules in their rules directory.
func anomalyDetectors(t *testing.T) *Detectors {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("..", "examples", "rules", "anomaly.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "anomaly.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := detectors.DefaultConfig()
	c.Paths = []string{filepath.Join(dir, "auth.log")} // never started here
	c.RulesDir = dir
	c.Rules = []string{"ssh-account-burst", "web-path-error-spike"}
	d, err := newDetectors(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// accountLine is a failed login for user from addr, stamped at.
func accountLine(at time.Time, user, addr string) []byte {
	return []byte(at.Format(time.Stamp) + " site-1 sshd[4242]: Failed password for " + user + " from " + addr + " port 52311 ssh2")
}

// feedAccount feeds minutes of alice's usual noise (two failures a
// minute) ending a minute before end, then, when burst, 40 failures in
// the minute of end from 203.0.113.1..8; it returns the sightings.
func feedAccount(d *Detectors, end time.Time, minutes int, burst bool) []intel.Sighting {
	var got []intel.Sighting
	emit := func(s intel.Sighting) { got = append(got, s) }
	start := end.Truncate(time.Minute).Add(-time.Duration(minutes) * time.Minute)
	for m := range minutes {
		at := start.Add(time.Duration(m) * time.Minute)
		d.Process(accountLine(at.Add(5*time.Second), "alice", fmt.Sprintf("198.51.100.%d", m%200+1)), emit)
		d.Process(accountLine(at.Add(35*time.Second), "alice", fmt.Sprintf("192.0.2.%d", m%200+1)), emit)
	}
	if burst {
		at := end.Truncate(time.Minute)
		for i := range 40 {
			d.Process(accountLine(at.Add(time.Duration(i)*100*time.Millisecond), "alice", fmt.Sprintf("203.0.113.%d", 1+i%8)), emit)
		}
	}
	return got
}

// TestAnomalyBaselinesSurviveRestartAndReload: the baselines a node
// learnt are saved to data_dir, restored by the next node, carried over a
// reload of the rules; a corrupt file is moved aside and counted.
func TestAnomalyBaselinesSurviveRestartAndReload(t *testing.T) {
	dataDir := t.TempDir()
	n := &Node{deps: &Deps{Config: Config{DataDir: dataDir}}, log: slog.New(slog.DiscardHandler)}
	// The lines are stamped in the recent past, so that classic syslog
	// stamps (no year) land in this year and none is ahead of the clock.
	now := time.Now().Truncate(time.Minute).Add(-time.Minute)

	learnt := anomalyDetectors(t)
	if got := feedAccount(learnt, now, 40, false); len(got) != 0 {
		t.Fatalf("usual noise fired: %+v", got)
	}
	if err := n.saveAnomalies(learnt); err != nil {
		t.Fatal(err)
	}
	if learnt.anomaly.saved.Load() != 1 {
		t.Fatal("save not counted")
	}

	// A new process without the file is warming up: the burst is only
	// learnt from.
	fresh := anomalyDetectors(t)
	if got := feedAccount(fresh, now, 0, true); len(got) != 0 {
		t.Fatalf("a node without baselines fired during warm-up: %+v", got)
	}

	// With the file, the next process knows alice's usual rate.
	restarted := anomalyDetectors(t)
	n.restoreAnomalies(restarted)
	if restarted.anomaly.restored.Load() != 1 || restarted.anomaly.loadErrors.Load() != 0 {
		t.Fatalf("restored %d keys, %d load errors; want 1 and 0", restarted.anomaly.restored.Load(), restarted.anomaly.loadErrors.Load())
	}
	got := feedAccount(restarted, now, 0, true)
	if len(got) != 5 || got[0].Detector != "ssh-account-burst" {
		t.Fatalf("restarted node: %d sightings %+v, want the burst's 5 busiest sources", len(got), got)
	}

	// A reload (a new engine) keeps the baselines of the engine it replaces.
	reloaded := anomalyDetectors(t)
	n.restoreAnomalies(reloaded)
	next := anomalyDetectors(t)
	before := reloaded.anomaly.restored.Load()
	reloaded.swap(next.engine.Load())
	if reloaded.anomaly.restored.Load() != before+1 {
		t.Fatalf("the reload carried %d keys, want 1", reloaded.anomaly.restored.Load()-before)
	}
	if got := feedAccount(reloaded, now, 0, true); len(got) != 5 {
		t.Fatalf("after a reload: %d sightings, want 5", len(got))
	}

	// A corrupt file: moved aside, counted, the node learns again.
	path := filepath.Join(dataDir, anomalyFile)
	if err := os.WriteFile(path, []byte(`{"version":1,"rules":[{"rule":"ssh-account-burst","key":"user","bucket":60000000000,"keys":[{"h":1,"mean":-5}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := anomalyDetectors(t)
	n.restoreAnomalies(bad)
	if bad.anomaly.loadErrors.Load() != 1 || bad.anomaly.restored.Load() != 0 {
		t.Fatalf("corrupt file: %d load errors, %d restored; want 1 and 0", bad.anomaly.loadErrors.Load(), bad.anomaly.restored.Load())
	}
	if _, err := os.Stat(path + ".bad"); err != nil {
		t.Fatalf("corrupt file not moved aside: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("corrupt file still in place: %v", err)
	}
}
