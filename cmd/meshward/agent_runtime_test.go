package main

import (
	"runtime/debug"
	"testing"
)

// The agent's collector target is 50 unless GOGC is in the environment,
// which the runtime has then applied and the agent leaves alone.
func TestAgentRuntimeDefaults(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	none := func(string) (string, bool) { return "", false }
	if got := applyRuntimeDefaults(none); got != agentGCPercent {
		t.Fatalf("without GOGC: %d, want %d", got, agentGCPercent)
	}
	if cur := debug.SetGCPercent(100); cur != agentGCPercent {
		t.Fatalf("without GOGC the runtime's target is %d, want %d", cur, agentGCPercent)
	}

	debug.SetGCPercent(200) // as GOGC=200 would have set it at start
	set := func(k string) (string, bool) { return "200", k == "GOGC" }
	if got := applyRuntimeDefaults(set); got != 200 {
		t.Fatalf("with GOGC=200: %d, want 200", got)
	}
	if cur := debug.SetGCPercent(100); cur != 200 {
		t.Fatalf("with GOGC=200 the runtime's target is %d, want 200", cur)
	}
}
