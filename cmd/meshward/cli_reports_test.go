package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
)

// TestCLIReports publishes indicator reports with a responder token,
// refuses a viewer and a bad report, and lists them, all and active only.
func TestCLIReports(t *testing.T) {
	now := fixed.Add(time.Hour)
	env := cliEnvWith(t, admin.Options{Version: "test", Now: func() time.Time { return now }})
	viewer, responder := env.TokenFile(t, admin.RoleViewer, "viewer-1"), env.TokenFile(t, admin.RoleResponder, "responder-1")

	_, _, err := runCLI(t, env, "iocs", "publish", "198.51.100.23", "--token-file", viewer)
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("viewer publish: %v, want permission denied (403)", err)
	}
	_, _, err = runCLI(t, env, "iocs", "publish", "198.51.100.23", "--confidence", "120", "--token-file", responder)
	if err == nil || !strings.Contains(err.Error(), "confidence") || !strings.Contains(err.Error(), "400") {
		t.Fatalf("confidence 120: %v, want 400 naming confidence", err)
	}
	out, _, err := runCLI(t, env, "iocs", "publish", "Evil.Example", "--confidence", "90", "--label", "c2", "--label", "botnet",
		"--technique", "T1071", "--description", "beaconing every 60s", "--valid-for", "720h", "--token-file", responder)
	if err != nil {
		t.Fatalf("responder publish: %v", err)
	}
	golden(t, "iocs-publish", out)
	// A report that expires in a minute, to be filtered out below.
	out, _, err = runCLI(t, env, "iocs", "publish", "198.51.100.23", "--valid-for", "1m", "-o", "json", "--token-file", responder)
	if err != nil {
		t.Fatalf("publish -o json: %v", err)
	}
	var r admin.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Seq != 2 || r.Report.Source != "operator:responder-1" || r.Report.Confidence != 50 {
		t.Fatalf("publish -o json: %+v, %v\n%s", r, err, out)
	}

	now = now.Add(2 * time.Minute) // the second report has expired
	out, _, err = runCLI(t, env, "iocs", "reports", "--token-file", viewer)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "iocs-reports", out)
	out, _, err = runCLI(t, env, "iocs", "reports", "--active", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rs []admin.Report
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 2 || rs[0].Report.Indicator.Value != "evil.example" || rs[1].Seq != 9 {
		t.Fatalf("reports --active: %+v, %v\n%s", rs, err, out)
	}
	if _, _, err := runCLI(t, env, "iocs", "reports", "--limit", "5000"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("--limit 5000: %v, want 400", err)
	}
	out, _, err = runCLI(t, env, "audit")
	if err != nil || strings.Count(out, "report.publish") != 4 || !strings.Contains(out, "denied") {
		t.Fatalf("audit lacks the publications: %v\n%s", err, out)
	}
}
