package exec_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/backendtest"
	"github.com/meshward/meshward/responders/exec"
)

func TestConformance(t *testing.T) {
	c, err := exec.New(exec.Config{Add: []string{"true"}, Remove: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, c)
}

// TestRunsCommands has a shell script record its arguments, and checks
// them and the state file across a restart.
func TestRunsCommands(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := filepath.Join(dir, "hook.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+log+"\n"), 0o755)
	cfg := exec.Config{
		Add:       []string{script, "add", "--type={type}"},
		Remove:    []string{script, "del", "{indicator}", "now"},
		StatePath: filepath.Join(dir, "state.json"),
		Types:     []intel.IndicatorType{intel.IPv4},
	}
	c, err := exec.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ind, _ := intel.NewIndicator(intel.IPv4, "192.0.2.7")
	dom, _ := intel.NewIndicator(intel.Domain, "x.example.com")
	now := time.Now()
	err = c.Apply(t.Context(), []intel.Policy{
		intel.NewPolicy(intel.ActionBlock, ind, "", "operator:t", now, time.Hour),
		intel.NewPolicy(intel.ActionBlock, dom, "", "operator:t", now, time.Hour),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := exec.New(cfg) // restart
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := c2.Current(t.Context())
	if len(cur) != 1 || cur[ind.Key()] != ind {
		t.Fatalf("Current after restart = %v", cur)
	}
	if err := c2.Apply(t.Context(), nil, []intel.Indicator{ind}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	if got, want := string(b), "add --type=ipv4 192.0.2.7\ndel 192.0.2.7 now\n"; got != want {
		t.Fatalf("commands ran as %q, want %q", got, want)
	}
}

func TestFailureAndTimeout(t *testing.T) {
	for name, argv := range map[string][]string{"exit 1": {"false"}, "timeout": {"sleep", "10"}, "missing": {"/nonexistent/cmd"}} {
		t.Run(name, func(t *testing.T) {
			c, err := exec.New(exec.Config{Add: argv, Timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ind, _ := intel.NewIndicator(intel.IPv4, "192.0.2.8")
			err = c.Apply(t.Context(), []intel.Policy{intel.NewPolicy(intel.ActionBlock, ind, "", "operator:t", time.Now(), time.Hour)}, nil)
			if err == nil || !strings.Contains(err.Error(), "192.0.2.8") {
				t.Fatalf("Apply error %v, want a failure naming the indicator", err)
			}
			if cur, _ := c.Current(t.Context()); len(cur) != 0 {
				t.Fatalf("a failed add was recorded: %v", cur)
			}
			if c.Stats().Failures != 1 {
				t.Errorf("stats %+v", c.Stats())
			}
		})
	}
}
