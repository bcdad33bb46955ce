package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/process"
)

// processNode is a fake node whose process export is fixed.
type processNode struct {
	*admintest.Node
	ex process.Export
}

func (p processNode) ProcessSummary(context.Context, time.Duration, string) (process.Summary, error) {
	return process.Summary{}, nil
}
func (p processNode) ProcessBreaches(context.Context) ([]process.Breach, error) { return nil, nil }
func (p processNode) ProcessEvent(context.Context, []byte) (process.Stored, bool, error) {
	return process.Stored{}, false, nil
}
func (p processNode) ProcessExport(context.Context) (process.Export, error) { return p.ex, nil }

var _ admin.ProcessService = processNode{}

// startProcessNode serves a fake node's admin API exporting ex; it
// returns the socket.
func startProcessNode(t *testing.T, ex process.Export) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv, err := admin.New(admin.Options{Node: processNode{admintest.NewNode(ex.Node), ex}, Store: admintest.OpenStore(t),
		SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return sock
}

func runReport(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := &cobra.Command{Use: "meshward", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newReportCmd())
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"report"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// Two nodes' exports merged: sharing and enforcing are measured to the
// later node; Markdown's charts are written beside it and parse as SVG.
func TestReportMergesNodesAndWritesCharts(t *testing.T) {
	t.Setenv(envToken, "")
	t.Setenv(envNode, "")
	d := fixed.Add(-time.Hour)
	rec := func(node string, recv, enf time.Duration) process.Record {
		return process.Record{Indicator: "ipv4:203.0.113.7", Site: "hq", Rule: "ssh-bruteforce", Severity: "high",
			FirstEvent: d.Add(-2 * time.Second), Detected: d, Received: d.Add(recv), Committed: d.Add(time.Second), Enforced: d.Add(enf)}
	}
	a := startProcessNode(t, process.Export{Node: "A", Generated: fixed, Records: []process.Record{rec("A", 0, 3*time.Second)},
		Expectations: []process.Expectation{{Name: "enforce-fast", Stage: process.StageEnforce, Within: 5 * time.Second}}})
	b := startProcessNode(t, process.Export{Node: "B", Generated: fixed, Records: []process.Record{rec("B", 4*time.Second, 8*time.Second)}})

	out, _, err := runReport(t, "--node", a, "--merge", b, "--format", "json", "--since", "1d")
	if err != nil {
		t.Fatal(err)
	}
	var rep process.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	got := map[process.Stage]float64{}
	for _, s := range rep.Summary.Stages {
		got[s.Stage] = s.P50
	}
	if rep.Expected != 2 || got[process.StageShare] != 4 || got[process.StageEnforce] != 8 || got[process.StageDetect] != 2 {
		t.Errorf("expected %d, stages %v: want 2 nodes, share 4s, enforce 8s, detect 2s", rep.Expected, got)
	}
	if len(rep.Summary.Breaches) != 1 || rep.Summary.Breaches[0].Late != 3*time.Second {
		t.Errorf("breaches %+v, want enforce-fast 3s late", rep.Summary.Breaches)
	}

	dir := t.TempDir()
	md := filepath.Join(dir, "weekly.md")
	if _, _, err := runReport(t, "--node", a, "--merge", b, "--format", "md", "-o", md); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	charts, _ := filepath.Glob(filepath.Join(dir, "weekly-*.svg"))
	if len(charts) != 6 { // detect, share, decide, enforce, remediate; breaches per day
		t.Fatalf("charts %v, want 6", charts)
	}
	for _, c := range charts {
		if !strings.Contains(string(doc), "]("+filepath.Base(c)+")") {
			t.Errorf("the document does not reference %s", filepath.Base(c))
		}
		b, _ := os.ReadFile(c)
		dec := xml.NewDecoder(bytes.NewReader(b))
		paths := 0
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "path" {
				paths++
			}
		}
		if paths < 2 {
			t.Errorf("%s has %d paths, want a plot", c, paths)
		}
	}

	for _, bad := range [][]string{{"--format", "pdf"}, {"--since", "-3d"}, {"--since", "soon"}} {
		if _, _, err := runReport(t, append([]string{"--node", a}, bad...)...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
