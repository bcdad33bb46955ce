package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel/feeds"
)

// runP2FeedCmd runs `meshward intel …` with the feed commands against env.
func runP2FeedCmd(t *testing.T, env *admintest.Env, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "meshward", SilenceUsage: true, SilenceErrors: true}
	intelCmd := &cobra.Command{Use: "intel"}
	intelCmd.AddCommand(newIntelFeedCmds()...)
	intelCmd.AddCommand(withFeedExport(newIntelExportCmd()))
	root.AddCommand(intelCmd)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append(args, "--node", env.Socket))
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func countReports(t *testing.T, env *admintest.Env, source string) int {
	t.Helper()
	rs, err := env.Client(t, env.AdminToken).IntelReports(context.Background(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rs {
		if r.Report.Source == source {
			n++
		}
	}
	return n
}

// Import reads the whole file before publishing: a strict import with a
// bad last line publishes nothing; a lenient one skips and counts it; a
// file larger than a batch goes in several; a MISP feed directory is
// read event by event; a dry run publishes nothing.
func TestCLIImport(t *testing.T) {
	env := cliEnvWith(t, admin.Options{Version: "test", Now: time.Now})
	dir := t.TempDir()
	list := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(list, []byte("# list\n203.0.113.1\n203.0.113.2\nevil.example\n203.0.113.300\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := runP2FeedCmd(t, env, "intel", "import", list, "--source", "strict-list", "--strict")
	if err == nil || !strings.Contains(err.Error(), "nothing published") || !strings.Contains(err.Error(), "list.txt:5") {
		t.Fatalf("strict import: %v, want nothing published naming list.txt:5", err)
	}
	if n := countReports(t, env, "strict-list"); n != 0 {
		t.Fatalf("%d reports published by a failed import", n)
	}
	out, _, err := runP2FeedCmd(t, env, "intel", "import", list, "--source", "lenient-list", "--confidence", "80", "--ttl", "24h", "--tlp", "amber")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "3 entries, 1 skipped (invalid=1)") || !strings.Contains(out, "published 3 reports with source lenient-list") {
		t.Fatalf("lenient import said:\n%s", out)
	}
	rs, _ := env.Client(t, env.AdminToken).IntelReports(context.Background(), 0, nil)
	for _, r := range rs {
		if r.Report.Source == "lenient-list" && (r.Report.Confidence != 80 || r.Report.Labels[0] != "tlp:amber" || r.Report.ValidUntil.Sub(r.Report.ValidFrom) != 24*time.Hour) {
			t.Errorf("imported report %+v", r.Report)
		}
	}

	var big strings.Builder
	for i := range 250 {
		fmt.Fprintf(&big, "198.51.%d.%d\n", i/200, i%200+1)
	}
	bigFile := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(bigFile, []byte(big.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runP2FeedCmd(t, env, "intel", "import", bigFile, "--source", "big", "--dry-run"); err != nil || countReports(t, env, "big") != 0 {
		t.Fatalf("dry run: %v, %d published", err, countReports(t, env, "big"))
	}
	if _, _, err := runP2FeedCmd(t, env, "intel", "import", bigFile, "--source", "big"); err != nil || countReports(t, env, "big") != 250 {
		t.Fatalf("import of 250 in batches of %d: %v, %d published", importBatch, err, countReports(t, env, "big"))
	}

	out, _, err = runP2FeedCmd(t, env, "intel", "import", "../../intel/feeds/testdata/misp", "--format", "misp", "--source", "circl")
	if err != nil || countReports(t, env, "circl") != 11 {
		t.Fatalf("misp import: %v, %d published\n%s", err, countReports(t, env, "circl"), out)
	}
	if _, _, err := runP2FeedCmd(t, env, "intel", "import", list, "--source", "Bad Name"); err == nil || !strings.Contains(err.Error(), "--source") {
		t.Fatalf("bad source: %v, want an error naming --source", err)
	}
}

// Export writes the node's reports as CSV, a plain list or a MISP feed
// directory that reads back; other formats go to the export command's
// own formats.
func TestCLIExport(t *testing.T) {
	env := cliEnvWith(t, admin.Options{Version: "test", Now: time.Now})
	dir := t.TempDir()
	list := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(list, []byte("203.0.113.1\nevil.example\nd41d8cd98f00b204e9800998ecf8427e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runP2FeedCmd(t, env, "intel", "import", list, "--source", "exp", "--tlp", "green"); err != nil {
		t.Fatal(err)
	}
	out, _, err := runP2FeedCmd(t, env, "intel", "export", "--format", "csv", "--source", "exp")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, strings.Join(feeds.CSVHeader, ",")+"\n") || !strings.Contains(out, "md5,d41d8cd98f00b204e9800998ecf8427e,exp,50,green,") || strings.Count(out, "\n") != 4 {
		t.Fatalf("csv export:\n%s", out)
	}
	out, _, err = runP2FeedCmd(t, env, "intel", "export", "--format", "plain", "--source", "exp")
	if err != nil || !strings.Contains(out, "\n203.0.113.1\n") || !strings.HasPrefix(out, "# Meshward") {
		t.Fatalf("plain export: %v\n%s", err, out)
	}
	feedDir := filepath.Join(dir, "misp")
	if _, errOut, err := runP2FeedCmd(t, env, "intel", "export", "--format", "misp", "-o", feedDir); err != nil || !strings.Contains(errOut, "manifest.json") {
		t.Fatalf("misp export: %v %s", err, errOut)
	}
	var back []feeds.Entry
	st, err := feeds.ParseMISP(feeds.DirOpener(os.DirFS(feedDir)), feeds.Options{File: "misp", Strict: true}, func(e feeds.Entry) error {
		back = append(back, e)
		return nil
	})
	if err != nil || st.Entries != 4 { // the three imported and the peer's report of the environment
		t.Fatalf("misp export read back: %+v, %v", st, err)
	}
	if _, _, err := runP2FeedCmd(t, env, "intel", "export", "--format", "misp"); err == nil || !strings.Contains(err.Error(), "-o DIR") {
		t.Fatalf("misp without -o: %v", err)
	}
	// Other formats are the export command's own: STIX.
	out, _, err = runP2FeedCmd(t, env, "intel", "export", "--format", "stix")
	if err != nil && strings.Contains(err.Error(), "misp, csv, plain") {
		t.Fatalf("stix: %v, want the command's own export", err)
	}
	if _, _, err := runP2FeedCmd(t, env, "intel", "export", "--format", "xml"); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}
