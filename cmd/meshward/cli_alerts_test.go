package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/alert"
)

// alertsNode is the fake node of the CLI tests with a real alert engine.
type alertsNode struct {
	*admintest.Node
	e *alert.Engine
}

func (n alertsNode) Alerts(context.Context) (admin.AlertList, error) {
	a, r := n.e.Alerts()
	return admin.AlertList{Active: a, Recent: r}, nil
}

func (n alertsNode) SilenceAlert(_ context.Context, id string, until time.Time) (alert.Alert, error) {
	return n.e.Silence(id, until)
}

// runAlertsCLI runs `meshward alerts ...` against socket.
func runAlertsCLI(socket string, args ...string) (string, error) {
	root := &cobra.Command{Use: "meshward", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newAlertsCmd())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--node", socket))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// The alerts a node fires are listed; one is silenced through the CLI
// (refused to a viewer), its silence shown and lifted; resolved alerts
// show with --recent.
func TestCLIAlerts(t *testing.T) {
	t.Setenv(envToken, "")
	t.Setenv(envNode, "")
	now := fixed
	e, err := alert.New(alert.Config{EvalInterval: time.Second, MaxGroups: 10, MaxRecent: 10, NodeDownAfter: time.Minute,
		LeaderlessAfter: time.Minute, FeedFailures: 3, SinkRate: alert.RateLimit{PerMinute: 10, Burst: 10},
		Rules: []alert.Rule{{Name: "member-down", On: alert.KindNodeDown, Severity: "high"}}},
		alert.Options{Now: func() time.Time { return now }, Sinks: []string{alert.SinkWebhook}})
	if err != nil {
		t.Fatal(err)
	}
	fired := e.Observe(alert.Event{Kind: alert.KindNodeDown, Key: "node-b", Detail: "member node-b not heard from for 1m"})
	e.Observe(alert.Event{Kind: alert.KindNodeDown, Key: "node-c"})
	e.Observe(alert.Event{Kind: alert.KindNodeDown, Key: "node-c", Resolved: true})
	id := fired[0].ID

	socket := filepath.Join(t.TempDir(), "admin.sock")
	srv, err := admin.New(admin.Options{Node: alertsNode{admintest.NewNode(cliNodeID), e}, Store: admintest.OpenStore(t),
		SocketPath: socket, Version: "test", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	out, err := runAlertsCLI(socket, "alerts", "list")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "member-down") || !strings.Contains(out, "key=node-b") ||
		strings.Contains(out, "node-c") {
		t.Fatalf("alerts list: %v\n%s", err, out)
	}
	if out, err := runAlertsCLI(socket, "alerts", "list", "--recent"); err != nil || !strings.Contains(out, "resolved") ||
		!strings.Contains(out, "key=node-c") {
		t.Fatalf("alerts list --recent: %v\n%s", err, out)
	}
	tok, err := admin.ReadTokenFile(srv.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	env := &admintest.Env{Server: srv, Socket: socket, AdminToken: tok}
	viewer := env.TokenFile(t, admin.RoleViewer, "viewer-1")
	if _, err := runAlertsCLI(socket, "alerts", "silence", id, "--token-file", viewer); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("viewer silence: %v, want 403", err)
	}
	out, err = runAlertsCLI(socket, "alerts", "silence", id, "--for", "2h")
	if err != nil || !strings.Contains(out, "silenced until 2026-03-01 14:00:00Z") {
		t.Fatalf("silence: %v\n%s", err, out)
	}
	if out, err := runAlertsCLI(socket, "alerts", "list", "-o", "json"); err != nil || !strings.Contains(out, `"silenced_until": "2026-03-01T14:00:00Z"`) {
		t.Fatalf("list -o json after silence: %v\n%s", err, out)
	}
	if _, err := runAlertsCLI(socket, "alerts", "silence", "0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown alert: %v, want 404", err)
	}
	if _, err := runAlertsCLI(socket, "alerts", "silence", "nothex", "--for", "1h"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("malformed ID: %v, want 400", err)
	}
	if _, err := runAlertsCLI(socket, "alerts", "silence", id, "--for", "1000h"); err == nil || !strings.Contains(err.Error(), "720h") {
		t.Fatalf("--for 1000h: %v", err)
	}
	if out, err := runAlertsCLI(socket, "alerts", "silence", id, "--for", "0s"); err != nil || !strings.Contains(out, "no longer silenced") {
		t.Fatalf("lift: %v\n%s", err, out)
	}
}
