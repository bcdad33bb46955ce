package main

import (
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
)

// TestCLIAcknowledge acknowledges a detection with a responder token,
// shows it in the list, refuses a viewer and a second acknowledgement,
// and withdraws it.
func TestCLIAcknowledge(t *testing.T) {
	env := cliEnvWith(t, admin.Options{Version: "test", Now: func() time.Time { return fixed.Add(time.Hour) }})
	id := admin.DetectionID(cliNodeID, 2) // the fixture's own sighting
	viewer, responder := env.TokenFile(t, admin.RoleViewer, "viewer-1"), env.TokenFile(t, admin.RoleResponder, "responder-1")

	_, _, err := runCLI(t, env, "detections", "ack", id, "--token-file", viewer)
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("viewer ack: %v, want permission denied (403)", err)
	}
	out, _, err := runCLI(t, env, "detections", "ack", id, "--note", "blocked at the edge", "--token-file", responder)
	if err != nil {
		t.Fatalf("responder ack: %v", err)
	}
	golden(t, "detections-ack", out)
	_, _, err = runCLI(t, env, "detections", "ack", id)
	if err == nil || !strings.Contains(err.Error(), "already acknowledged by responder-1") || !strings.Contains(err.Error(), "409") {
		t.Fatalf("second ack: %v, want 409 naming the first", err)
	}
	if _, _, err := runCLI(t, env, "detections", "ack", "0011223344556677"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown detection: %v, want 404", err)
	}

	out, _, err = runCLI(t, env, "detections", "list", "--token-file", viewer)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "detections-list-acked", out)
	if out, _, err := runCLI(t, env, "detections", "list", "--unacknowledged"); err != nil || strings.Contains(out, id) {
		t.Fatalf("list --unacknowledged: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, env, "detections", "list", "--acknowledged", "--unacknowledged"); err == nil {
		t.Fatal("--acknowledged with --unacknowledged accepted")
	}

	out, _, err = runCLI(t, env, "audit")
	if err != nil || !strings.Contains(out, "detection.ack") || !strings.Contains(out, "denied") {
		t.Fatalf("audit lacks the ack and the denied ack: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "detections", "unack", id, "--token-file", responder); err != nil || !strings.Contains(out, id) {
		t.Fatalf("unack: %v %q", err, out)
	}
	if out, _, err := runCLI(t, env, "detections", "list", "--acknowledged"); err != nil || strings.Contains(out, id) {
		t.Fatalf("list --acknowledged after unack: %v\n%s", err, out)
	}
}
