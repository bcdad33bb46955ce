// Package report renders a process.Report as JSON, HTML or Markdown,
// with SVG charts drawn by gonum.org/v1/plot: per stage, the cumulative
// distribution of its durations; per day, the playbook's breaches. HTML
// carries the SVGs inline; Markdown references SVG files written beside
// it, or carries them as data URIs when there is no file to write beside.
package report

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/meshward/meshward/process"
)

// Formats Render accepts.
const (
	FormatJSON = "json"
	FormatHTML = "html"
	FormatMD   = "md"
)

// Chart is one SVG chart of a report.
type Chart struct {
	// Name is a file-name-safe name: "cdf-<stage>" or "breaches-per-day".
	Name  string
	Title string
	SVG   []byte
}

// Charts draws the report's charts: the CDF of each stage that has
// durations, in stage order, then the breaches per day when there are any.
func Charts(rep process.Report) ([]Chart, error) {
	var out []Chart
	for _, st := range process.AllStages {
		v := rep.Summary.Samples[st]
		if len(v) == 0 {
			continue
		}
		svg, err := cdfChart(st, v)
		if err != nil {
			return nil, fmt.Errorf("chart of stage %s: %w", st, err)
		}
		out = append(out, Chart{Name: "cdf-" + string(st), Title: "Time to " + string(st) + " (CDF)", SVG: svg})
	}
	if len(rep.Summary.BreachesByDay) > 0 {
		svg, err := breachChart(rep.Summary.BreachesByDay)
		if err != nil {
			return nil, fmt.Errorf("chart of breaches: %w", err)
		}
		out = append(out, Chart{Name: "breaches-per-day", Title: "Playbook breaches per day", SVG: svg})
	}
	return out, nil
}

// cdfChart draws the cumulative distribution of sorted durations (s).
func cdfChart(st process.Stage, sorted []float64) ([]byte, error) {
	p := plot.New()
	p.Title.Text = "time to " + string(st)
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "fraction of incidents"
	p.Y.Min, p.Y.Max = 0, 1
	pts := make(plotter.XYs, 0, len(sorted)+1)
	pts = append(pts, plotter.XY{X: sorted[0], Y: 0})
	for i, v := range sorted {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("duration %v", v)
		}
		pts = append(pts, plotter.XY{X: v, Y: float64(i+1) / float64(len(sorted))})
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	l.StepStyle = plotter.PostStep
	p.Add(l, plotter.NewGrid())
	return drawSVG(p)
}

// breachChart draws one bar per day.
func breachChart(days []process.DayCount) ([]byte, error) {
	p := plot.New()
	p.Title.Text = "breaches per day"
	p.Y.Label.Text = "breaches"
	vals := make(plotter.Values, len(days))
	names := make([]string, len(days))
	for i, d := range days {
		vals[i], names[i] = float64(d.Count), d.Day
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(18))
	if err != nil {
		return nil, err
	}
	bars.Color = color.RGBA{R: 0xc0, G: 0x39, B: 0x2b, A: 0xff}
	bars.LineStyle.Width = 0
	p.Add(bars)
	p.NominalX(names...)
	p.Y.Min = 0
	return drawSVG(p)
}

func drawSVG(p *plot.Plot) ([]byte, error) {
	c := vgsvg.New(6*vg.Inch, 3.5*vg.Inch)
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Render renders the report in format. For Markdown, files are the
// charts to write beside the document, by name (the document references
// them as <base>-<chart>.svg), unless base is "", when the document
// carries them as data URIs and files is empty.
func Render(rep process.Report, format, base string) (doc []byte, files map[string][]byte, err error) {
	switch format {
	case FormatJSON:
		b, err := json.MarshalIndent(rep, "", "  ")
		return append(b, '\n'), nil, err
	case FormatHTML:
		charts, err := Charts(rep)
		if err != nil {
			return nil, nil, err
		}
		doc, err := renderHTML(rep, charts)
		return doc, nil, err
	case FormatMD:
		charts, err := Charts(rep)
		if err != nil {
			return nil, nil, err
		}
		return renderMD(rep, charts, base)
	}
	return nil, nil, fmt.Errorf("format %q: want json, html or md", format)
}

// Seconds renders a duration in seconds as an operator reads it.
func Seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// stripXMLHeader drops an SVG's XML declaration so that it can sit
// inline in HTML.
func stripXMLHeader(svg []byte) []byte {
	if i := bytes.Index(svg, []byte("<svg")); i > 0 {
		return svg[i:]
	}
	return svg
}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"secs": Seconds,
	"svg":  func(b []byte) template.HTML { return template.HTML(stripXMLHeader(b)) }, // drawn here, from numbers and our own labels
	"dur":  func(d time.Duration) string { return d.Round(time.Second).String() },
	"ts":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Meshward process report</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:1em}</style>
</head><body>
<h1>Meshward process report</h1>
<p>Period {{ts .Summary.Since}} to {{ts .Summary.Until}}; {{.Summary.Incidents}} incidents; nodes merged: {{len .Nodes}} (every node = {{.Expected}}, roster {{.Members}}).</p>
{{if .Partial}}<p><strong>{{.Partial}}</strong></p>
{{end}}<h2>Stages</h2>
{{template "stages" .Summary.Stages}}
{{range .Groupings}}{{if .Groups}}<h2>By {{.Name}}</h2>
{{range .Groups}}<h3>{{.Key}}</h3>{{template "stages" .Stages}}{{end}}{{end}}{{end}}
<h2>Charts</h2>
{{range .Charts}}<figure><figcaption>{{.Title}}</figcaption>{{svg .SVG}}</figure>
{{end}}
<h2>Breaches</h2>
{{if .Summary.Breaches}}<table><tr><th>expectation</th><th>stage</th><th>indicator</th><th>detection</th><th>site</th><th>due</th><th>late</th><th>open</th></tr>
{{range .Summary.Breaches}}<tr><td>{{.Expectation}}</td><td>{{.Stage}}</td><td>{{.Indicator}}</td><td>{{.Detection}}</td><td>{{.Site}}</td><td>{{ts .Due}}</td><td>{{dur .Late}}</td><td>{{.Open}}</td></tr>
{{end}}</table>{{else}}<p>No breaches.</p>{{end}}
</body></html>
{{define "stages"}}<table><tr><th>stage</th><th>count</th><th>p50</th><th>p90</th><th>p99</th></tr>
{{range .}}<tr><td>{{.Stage}}</td><td>{{.Count}}</td><td>{{secs .P50}}</td><td>{{secs .P90}}</td><td>{{secs .P99}}</td></tr>
{{end}}</table>{{end}}
`))

// partial warns when fewer nodes were merged than the roster holds:
// share and enforce then end at the last node merged, not the mesh's.
func partial(rep process.Report) string {
	if len(rep.Nodes) >= rep.Members {
		return ""
	}
	return fmt.Sprintf("Merged %d of the %d members: share and enforce are measured to the nodes merged only (meshward report --merge every node for the mesh's).",
		len(rep.Nodes), rep.Members)
}

// grouping is one grouping of a report, named.
type grouping struct {
	Name   string
	Groups []process.Group
}

func groupings(rep process.Report) []grouping {
	return []grouping{{"site", rep.BySite}, {"rule", rep.ByRule}, {"day", rep.ByDay}}
}

func renderHTML(rep process.Report, charts []Chart) ([]byte, error) {
	var b bytes.Buffer
	err := htmlTmpl.Execute(&b, struct {
		process.Report
		Charts    []Chart
		Groupings []grouping
		Partial   string
	}{rep, charts, groupings(rep), partial(rep)})
	return b.Bytes(), err
}

// mdCell makes a value safe in a Markdown table cell.
func mdCell(s string) string {
	r := strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;", "`", "'", "[", `\[`, "]", `\]`)
	return r.Replace(s)
}

func mdStages(b *bytes.Buffer, stages []process.StageStats) {
	b.WriteString("| stage | count | p50 | p90 | p99 |\n|---|---:|---:|---:|---:|\n")
	for _, s := range stages {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s |\n", s.Stage, s.Count, Seconds(s.P50), Seconds(s.P90), Seconds(s.P99))
	}
	b.WriteString("\n")
}

func renderMD(rep process.Report, charts []Chart, base string) ([]byte, map[string][]byte, error) {
	var b bytes.Buffer
	s := rep.Summary
	fmt.Fprintf(&b, "# Meshward process report\n\nPeriod %s to %s; %d incidents; nodes merged: %d (every node = %d, roster %d).\n\n",
		s.Since.Format(time.RFC3339), s.Until.Format(time.RFC3339), s.Incidents, len(rep.Nodes), rep.Expected, rep.Members)
	if w := partial(rep); w != "" {
		fmt.Fprintf(&b, "**%s**\n\n", w)
	}
	b.WriteString("## Stages\n\n")
	mdStages(&b, s.Stages)
	for _, g := range groupings(rep) {
		if len(g.Groups) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## By %s\n\n", g.Name)
		for _, grp := range g.Groups {
			fmt.Fprintf(&b, "### %s\n\n", mdCell(grp.Key))
			mdStages(&b, grp.Stages)
		}
	}
	files := make(map[string][]byte)
	if len(charts) > 0 {
		b.WriteString("## Charts\n\n")
	}
	for _, c := range charts {
		if base == "" {
			fmt.Fprintf(&b, "![%s](data:image/svg+xml;base64,%s)\n\n", c.Title, base64.StdEncoding.EncodeToString(c.SVG))
			continue
		}
		name := base + "-" + c.Name + ".svg"
		files[name] = c.SVG
		fmt.Fprintf(&b, "![%s](%s)\n\n", c.Title, name)
	}
	b.WriteString("## Breaches\n\n")
	if len(s.Breaches) == 0 {
		b.WriteString("No breaches.\n")
	} else {
		b.WriteString("| expectation | stage | indicator | detection | site | due | late | open |\n|---|---|---|---|---|---|---:|---|\n")
		for _, br := range s.Breaches {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %t |\n", mdCell(br.Expectation), br.Stage, mdCell(br.Indicator),
				mdCell(br.Detection), mdCell(br.Site), br.Due.UTC().Format(time.RFC3339), br.Late.Round(time.Second), br.Open)
		}
	}
	return b.Bytes(), files, nil
}
