package main

import (
	"strings"
	"testing"

	"github.com/meshward/meshward/intel"
)

// meshward mesh risk set signs set_min_risk with the admin key; a
// threshold out of 0..100 is refused before anything is signed.
func TestCLIMeshRiskSet(t *testing.T) {
	env, deps := operatorEnv(t)
	out, errOut, err := runCLIWith(t, env, deps, "mesh", "risk", "set", "--min-risk", "40")
	if err != nil {
		t.Fatalf("%v (stderr %q)", err, errOut)
	}
	if !strings.Contains(out, "set_min_risk") {
		t.Errorf("output %q does not name set_min_risk", out)
	}
	cmds := env.Node.Commands()
	if len(cmds) != 1 || cmds[0].Op != intel.OpSetMinRisk || cmds[0].MinRisk != 40 || env.Node.MinRisk != 40 {
		t.Fatalf("committed %+v, want one set_min_risk of 40", cmds)
	}
	if _, _, err := runCLIWith(t, env, deps, "mesh", "risk", "set", "--min-risk", "101"); err == nil || !strings.Contains(err.Error(), "min_risk 101") {
		t.Fatalf("--min-risk 101: %v, want a refusal naming min_risk", err)
	}
	if len(env.Node.Commands()) != 1 {
		t.Fatalf("a refused threshold was submitted")
	}
}
