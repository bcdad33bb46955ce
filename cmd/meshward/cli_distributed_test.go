package main

import (
	"strings"
	"testing"

	"github.com/meshward/meshward/intel"
)

// meshward mesh distributed set signs set_distributed with the admin
// key; a negative value is refused before anything is signed.
func TestCLIMeshDistributedSet(t *testing.T) {
	env, deps := operatorEnv(t)
	out, errOut, err := runCLIWith(t, env, deps, "mesh", "distributed", "set", "--min-sites", "5", "--threshold", "20", "--site-cap", "4")
	if err != nil {
		t.Fatalf("%v (stderr %q)", err, errOut)
	}
	if !strings.Contains(out, "set_distributed") {
		t.Errorf("output %q does not name set_distributed", out)
	}
	cmds := env.Node.Commands()
	if len(cmds) != 1 || cmds[0].Op != intel.OpSetDistributed || cmds[0].DistributedMinSites != 5 ||
		cmds[0].DistributedThreshold != 20 || cmds[0].DistributedSiteCap != 4 {
		t.Fatalf("committed %+v, want one set_distributed 5/20/4", cmds)
	}
	if _, _, err := runCLIWith(t, env, deps, "mesh", "distributed", "set", "--min-sites", "-1", "--threshold", "20", "--site-cap", "4"); err == nil {
		t.Fatal("a negative min-sites was accepted")
	}
	if len(env.Node.Commands()) != 1 {
		t.Fatalf("a refused rule was submitted")
	}
}
