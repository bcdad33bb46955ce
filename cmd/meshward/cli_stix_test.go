package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel/stix"
	"github.com/meshward/meshward/intel/stix/stixtest"
)

func runExport(t *testing.T, env *admintest.Env, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "meshward", SilenceUsage: true, SilenceErrors: true}
	intel := &cobra.Command{Use: "intel"}
	intel.AddCommand(newIntelExportCmd())
	root.AddCommand(intel)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(append([]string{"intel", "export"}, args...), "--node", env.Socket))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestCLIIntelExportSTIX: the export with a viewer token is a bundle
// that validates against the OASIS schemas, the same bytes twice, and
// reads back to the node's indicators; -o writes the same into a file.
func TestCLIIntelExportSTIX(t *testing.T) {
	v := stixtest.New(t)
	env := cliEnv(t)
	viewer := env.TokenFile(t, admin.RoleViewer, "viewer-1")
	out, err := runExport(t, env, "--format", "stix", "--tlp", "green", "--token-file", viewer)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := v.Bundle([]byte(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// One report, two sightings and one policy, all of 203.0.113.7, from
	// two nodes.
	if counts["indicator"] != 4 || counts["sighting"] != 2 || counts["identity"] != 2 || counts["attack-pattern"] != 1 ||
		counts["relationship"] != 1 || counts["marking-definition"] != 1 {
		t.Errorf("objects %v", counts)
	}
	entries, _, err := stix.Reader{}.ReadAll(strings.NewReader(out), 0)
	if err != nil || len(entries) != 4 {
		t.Fatalf("read back: %d entries, %v", len(entries), err)
	}
	for _, e := range entries {
		if e.Indicator.Key() != "ipv4:203.0.113.7" || e.TLP != stix.TLPGreen {
			t.Errorf("entry %+v", e)
		}
	}
	file := filepath.Join(t.TempDir(), "mesh.stix.json")
	if _, err := runExport(t, env, "-o", file, "--tlp", "green", "--token-file", viewer); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != out {
		t.Fatalf("file export differs from the first: %v", err)
	}
	if entries, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
	if _, err := runExport(t, env, "--tlp", "purple"); err == nil || !strings.Contains(err.Error(), "purple") || !strings.Contains(err.Error(), "400") {
		t.Errorf("--tlp purple: %v", err)
	}
	if _, err := runExport(t, env, "--format", "yaml"); err == nil || !strings.Contains(err.Error(), "stix") {
		t.Errorf("--format yaml: %v", err)
	}
	if _, err := runExport(t, env, "--token-file", admintest.WriteTokenFile(t, "mwt_nope")); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("bad token: %v", err)
	}
	// A failed export leaves no file.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if _, err := runExport(t, env, "-o", bad, "--tlp", "purple"); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("failed export left %s: %v", bad, err)
	}
}
