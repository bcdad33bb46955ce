package testnet

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// svgTexts parses an SVG document strictly as XML, checks its root is
// <svg>, and returns its text elements' contents and the number of
// path elements.
func svgTexts(t *testing.T, b []byte) (texts []string, paths int) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	root := ""
	inText := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			inText = el.Name.Local == "text"
			if el.Name.Local == "path" {
				paths++
			}
		case xml.CharData:
			if inText {
				texts = append(texts, string(el))
			}
		case xml.EndElement:
			inText = false
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return texts, paths
}

func TestWriteReportDirCharts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "report")
	nodes := []NodeReport{
		{Site: "site-00", PropagationMs: 0, CommitMs: 40, EnforceMs: 45},
		{Site: "site-01", PropagationMs: 3.5, CommitMs: 41, EnforceMs: 60},
		{Site: "site-02", PropagationMs: 7, CommitMs: 42, EnforceMs: 52},
		{Site: "site-03", PropagationMs: 9, CommitMs: -1, EnforceMs: -1}, // cut off: never committed
	}
	rep := &Report{Nodes: 4, Indicator: "203.0.113.9", PerNode: nodes}
	if err := WriteReportDir(dir, rep, rep.ChartData(), ReadProcessStats(4)); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Report  Report       `json:"report"`
		Process ProcessStats `json:"process"`
		Charts  []string     `json:"charts"`
	}
	b, err := os.ReadFile(filepath.Join(dir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Report.Indicator != "203.0.113.9" || len(got.Report.PerNode) != 4 || len(got.Charts) != 3 {
		t.Fatalf("report.json: %+v", got)
	}
	if got.Process.PeakRSSMB <= 0 || got.Process.PeakRSSPerNodeMB*4 != got.Process.PeakRSSMB {
		t.Errorf("process figures %+v", got.Process)
	}
	for name, want := range map[string][]string{
		ChartPropagation: {SeriesPropagation + " (4 nodes)", "ms after the first detection", "fraction of nodes"},
		ChartEnforcement: {SeriesEnforcement + " (3 nodes)", "ms after the first commit"},
		ChartTimeline:    {SeriesReceived, SeriesCommitted, SeriesEnforced, "site-00", "site-03"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		texts, paths := svgTexts(t, b)
		all := strings.Join(texts, "\n")
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Errorf("%s: no text %q among %q", name, w, texts)
			}
		}
		if paths == 0 {
			t.Errorf("%s draws nothing", name)
		}
	}
}

// A series with no point (nothing committed) is left out of the
// timeline's legend, and an empty CDF says so.
func TestChartsWithoutCommit(t *testing.T) {
	dir := t.TempDir()
	nodes := []NodeReport{{Site: "a", PropagationMs: 1, CommitMs: -1, EnforceMs: -1}, {Site: "b", PropagationMs: 2, CommitMs: -1, EnforceMs: -1}}
	if _, err := WriteCharts(dir, ChartData{Title: "t", Nodes: nodes}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ChartTimeline))
	texts, _ := svgTexts(t, b)
	all := strings.Join(texts, "\n")
	if !strings.Contains(all, SeriesReceived) || strings.Contains(all, SeriesCommitted) || strings.Contains(all, SeriesEnforced) {
		t.Errorf("timeline legend %q: want received only", texts)
	}
	b, _ = os.ReadFile(filepath.Join(dir, ChartEnforcement))
	if texts, _ = svgTexts(t, b); !strings.Contains(strings.Join(texts, "\n"), "(no node)") {
		t.Errorf("empty enforcement CDF: %q", texts)
	}
}
