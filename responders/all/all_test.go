package all_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshward/meshward/responders"
	_ "github.com/meshward/meshward/responders/all"
)

func TestEveryBackendRegistered(t *testing.T) {
	got := responders.Registered()
	for _, want := range []string{"dns", "dry-run", "exec", "nftables"} {
		if !slices.Contains(got, want) {
			t.Errorf("registered %v, missing %s", got, want)
		}
	}
}

func TestBuildFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := responders.DefaultConfig()
	cfg.DryRun = false
	cfg.DNS.Enabled = true
	cfg.DNS.UnboundPath = filepath.Join(dir, "unbound.conf")
	cfg.Exec = []responders.ExecConfig{{Add: []string{"true"}}, {Name: "second", Add: []string{"true"}}}
	bs, err := responders.Build(cfg, responders.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	var names []string
	for _, b := range bs.List {
		names = append(names, b.Name())
	}
	if want := []string{"dns", "exec", "second"}; !slices.Equal(names, want) {
		t.Fatalf("built %v, want %v", names, want)
	}
	if bs.DryRun != nil {
		t.Error("a dry run was built while dry_run is off")
	}

	cfg.Exec = append(cfg.Exec, responders.ExecConfig{Name: "bad"})
	if _, err := responders.Build(cfg, responders.Deps{}); err == nil || !strings.HasPrefix(err.Error(), "responders.exec[2]: ") {
		t.Fatalf("err = %v, want one naming responders.exec[2]", err)
	}
}
