package report

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/process"
)

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

// sampleReport is three incidents on two nodes, one late for its
// acknowledgement, with a hostile site name.
func sampleReport() process.Report {
	rec := func(ind, node, site string, det, acked float64) process.Record {
		d := t0.Add(time.Duration(det * float64(time.Second)))
		r := process.Record{Indicator: ind, Node: node, Site: site, Rule: "ssh-bruteforce", Severity: "high",
			FirstEvent: d.Add(-3 * time.Second), Detected: d, Received: d.Add(time.Second), Committed: d.Add(2 * time.Second),
			Enforced: d.Add(4 * time.Second)}
		if acked > 0 {
			r.Acked = d.Add(time.Duration(acked * float64(time.Second)))
		}
		return r
	}
	a := process.Export{Node: "A", Generated: t0.Add(48 * time.Hour), Members: 2,
		Expectations: []process.Expectation{{Name: "ack-high", Severity: "high", Stage: process.StageTriage, Within: 10 * time.Minute}},
		Records: []process.Record{rec("ipv4:203.0.113.1", "A", "paris", 0, 60), rec("ipv4:203.0.113.2", "A", "<script>x|y</script>", 86400, 1200),
			rec("ipv4:203.0.113.3", "A", "paris", 3600, 30)}}
	b := process.Export{Node: "B", Generated: t0.Add(48 * time.Hour), Members: 2,
		Records: []process.Record{rec("ipv4:203.0.113.1", "B", "lyon", 1, 0), rec("ipv4:203.0.113.2", "B", "lyon", 86401, 0),
			rec("ipv4:203.0.113.3", "B", "lyon", 3601, 0)}}
	return process.BuildReport([]process.Export{a, b}, t0.Add(-24*time.Hour), t0.Add(48*time.Hour))
}

// plotted reads an SVG's paths: the most line segments one path has (a
// plotted line) and how many paths are filled shapes other than the
// white background (bars).
func plotted(t *testing.T, svg []byte) (maxSegments, filled int) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "path" {
			continue
		}
		var d, style string
		for _, a := range se.Attr {
			switch a.Name.Local {
			case "d":
				d = a.Value
			case "style":
				style = a.Value
			}
		}
		maxSegments = max(maxSegments, strings.Count(d, "L"))
		if strings.Contains(style, "fill:#") && !strings.Contains(style, "fill:#FFFFFF") {
			filled++
		}
	}
}

// svgElements parses an SVG document as XML and counts its elements by name.
func svgElements(t *testing.T, svg []byte) map[string]int {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	out := map[string]int{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			out[se.Name.Local]++
		}
	}
	if out["svg"] != 1 {
		t.Fatalf("no svg root: %v", out)
	}
	return out
}

func TestReportFigures(t *testing.T) {
	rep := sampleReport()
	if rep.Expected != 2 || rep.Summary.Incidents != 3 {
		t.Fatalf("expected %d incidents %d, want 2 and 3", rep.Expected, rep.Summary.Incidents)
	}
	want := map[process.Stage]float64{process.StageDetect: 3, process.StageShare: 2, process.StageDecide: 2, process.StageEnforce: 5}
	for _, s := range rep.Summary.Stages {
		if w, ok := want[s.Stage]; ok && (s.Count != 3 || s.P50 != w || s.P99 != w) {
			t.Errorf("stage %+v, want 3 incidents of %vs", s, w)
		}
	}
	if len(rep.Summary.Breaches) != 1 || rep.Summary.Breaches[0].Late != 10*time.Minute {
		t.Errorf("breaches %+v, want one 10m late", rep.Summary.Breaches)
	}
}

func TestRenderHTMLChartsInline(t *testing.T) {
	rep := sampleReport()
	doc, files, err := Render(rep, FormatHTML, "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 0 {
		t.Errorf("HTML wrote %d files beside it", len(files))
	}
	html := string(doc)
	if strings.Contains(html, "<script>") || !strings.Contains(html, "&lt;script&gt;") {
		t.Error("a site name was not escaped")
	}
	svgs := regexp.MustCompile(`(?s)<svg.*?</svg>`).FindAllString(html, -1)
	// Six stages have durations (no compliance), plus the breaches.
	if len(svgs) != 7 {
		t.Fatalf("%d inline SVGs, want 7", len(svgs))
	}
	for i, s := range svgs[:6] {
		els := svgElements(t, []byte(s))
		if segs, _ := plotted(t, []byte(s)); segs < 2*3 || els["text"] < 3 {
			t.Errorf("chart %d: longest path of %d segments, elements %v; want a step line through 3 incidents and labelled axes", i, segs, els)
		}
	}
	// The breaches: one bar per day with a breach.
	if _, bars := plotted(t, []byte(svgs[6])); bars != len(rep.Summary.BreachesByDay) {
		t.Errorf("breach chart has %d bars, want %d", bars, len(rep.Summary.BreachesByDay))
	}
	for _, want := range []string{"time to triage", "breaches per day", "<td>ack-high</td>", "<h2>By site</h2>", "<h3>paris</h3>"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}

func TestRenderMarkdownFilesAndDataURIs(t *testing.T) {
	rep := sampleReport()
	doc, files, err := Render(rep, FormatMD, "weekly")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 7 {
		t.Fatalf("%d chart files, want 7", len(files))
	}
	for name, svg := range files {
		if !strings.HasPrefix(name, "weekly-") || !strings.HasSuffix(name, ".svg") {
			t.Errorf("chart file %q", name)
		}
		if !strings.Contains(string(doc), "]("+name+")") {
			t.Errorf("document does not reference %s", name)
		}
		svgElements(t, svg)
		if segs, bars := plotted(t, svg); name == "weekly-breaches-per-day.svg" && bars != 1 || name != "weekly-breaches-per-day.svg" && segs < 6 {
			t.Errorf("%s: %d segments, %d bars", name, segs, bars)
		}
	}
	if strings.Contains(string(doc), "<script>") || !strings.Contains(string(doc), "&lt;script&gt;x\\|y") {
		t.Errorf("hostile site not neutralised in Markdown:\n%s", doc)
	}
	// Without a file, the charts travel as data URIs.
	doc, files, err = Render(rep, FormatMD, "")
	if err != nil || len(files) != 0 {
		t.Fatalf("files %d err %v", len(files), err)
	}
	uris := regexp.MustCompile(`data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)`).FindAllStringSubmatch(string(doc), -1)
	if len(uris) != 7 {
		t.Fatalf("%d data URIs, want 7", len(uris))
	}
	svg, err := base64.StdEncoding.DecodeString(uris[0][1])
	if err != nil {
		t.Fatal(err)
	}
	svgElements(t, svg)
}

// A report of fewer nodes than the roster says so.
func TestRenderWarnsOfPartialMerge(t *testing.T) {
	rep := sampleReport()
	for _, f := range []string{FormatHTML, FormatMD} {
		doc, _, err := Render(rep, f, "")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(doc), "Merged ") {
			t.Errorf("%s: a warning with every member merged", f)
		}
	}
	rep.Members = 5
	for _, f := range []string{FormatHTML, FormatMD} {
		doc, _, err := Render(rep, f, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "Merged 2 of the 5 members") {
			t.Errorf("%s: no warning of a partial merge", f)
		}
	}
}

func TestRenderJSONMatches(t *testing.T) {
	rep := sampleReport()
	doc, _, err := Render(rep, FormatJSON, "")
	if err != nil {
		t.Fatal(err)
	}
	var back process.Report
	if err := json.Unmarshal(doc, &back); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(rep)
	b, _ := json.Marshal(back)
	if !bytes.Equal(a, b) {
		t.Errorf("JSON does not round-trip:\n%s\n%s", a, b)
	}
	if _, _, err := Render(rep, "pdf", ""); err == nil {
		t.Error("unknown format accepted")
	}
}
