package testnet

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The files a report directory holds.
const (
	ReportJSON       = "report.json"
	ChartPropagation = "propagation-cdf.svg"
	ChartEnforcement = "enforcement-cdf.svg"
	ChartTimeline    = "timeline.svg"
)

// Series names, as the charts' legends show them.
const (
	SeriesPropagation = "first detection → sighting held"
	SeriesEnforcement = "first commit → block enforced"
	SeriesReceived    = "received"
	SeriesCommitted   = "committed"
	SeriesEnforced    = "enforced"
)

// ChartData is what the charts draw: one indicator's way through the
// mesh, per node, in milliseconds after its first detection (negative:
// never).
type ChartData struct {
	Title     string
	Indicator string
	Nodes     []NodeReport
}

// ProcessStats describe the process that ran the mesh.
type ProcessStats struct {
	// PeakRSSMB is the process's peak resident set (VmHWM), and
	// PeakRSSPerNodeMB that divided by the nodes.
	PeakRSSMB        float64 `json:"peak_rss_mb"`
	PeakRSSPerNodeMB float64 `json:"peak_rss_per_node_mb"`
	Nodes            int     `json:"nodes"`
	// PID is the process's ID; First its first node's index in the mesh.
	PID   int `json:"pid,omitempty"`
	First int `json:"first,omitempty"`
	// Processes are each process's own figures when the mesh ran in
	// several (procs.go), the above their sums.
	Processes []ProcessStats `json:"processes,omitempty"`
}

// ReadProcessStats reads the process's figures for a mesh of nodes.
func ReadProcessStats(nodes int) ProcessStats {
	ps := ProcessStats{Nodes: nodes, PID: os.Getpid()}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return ps
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			ps.PeakRSSMB = kb / 1024
		}
	}
	if nodes > 0 {
		ps.PeakRSSPerNodeMB = ps.PeakRSSMB / float64(nodes)
	}
	return ps
}

// WriteReportDir writes report (as report.json, beside the process's
// figures and the charts' names) and the charts of d into dir, which it
// creates.
func WriteReportDir(dir string, report any, d ChartData, ps ProcessStats) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report dir: %w", err)
	}
	charts, err := WriteCharts(dir, d)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(struct {
		Report  any          `json:"report"`
		Process ProcessStats `json:"process"`
		Charts  []string     `json:"charts"`
	}{report, ps, charts}, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ReportJSON), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// WriteCharts draws the CDF of propagation (first detection → each node
// held a sighting), the CDF of enforcement (first commit → each node
// enforced the block) and the per-node timeline (received, committed,
// enforced) as SVG files in dir, and returns their names.
func WriteCharts(dir string, d ChartData) ([]string, error) {
	var prop, enf []float64
	firstCommit := -1.0
	for _, n := range d.Nodes {
		if n.CommitMs >= 0 && (firstCommit < 0 || n.CommitMs < firstCommit) {
			firstCommit = n.CommitMs
		}
	}
	for _, n := range d.Nodes {
		if n.PropagationMs >= 0 {
			prop = append(prop, n.PropagationMs)
		}
		if n.EnforceMs >= 0 && firstCommit >= 0 {
			enf = append(enf, max(n.EnforceMs-firstCommit, 0))
		}
	}
	title := d.Title
	if d.Indicator != "" {
		title += " — " + d.Indicator
	}
	files := []struct {
		name string
		p    func() (*plot.Plot, error)
	}{
		{ChartPropagation, func() (*plot.Plot, error) {
			return cdfPlot(title+": propagation", "ms after the first detection", SeriesPropagation, prop)
		}},
		{ChartEnforcement, func() (*plot.Plot, error) {
			return cdfPlot(title+": enforcement", "ms after the first commit", SeriesEnforcement, enf)
		}},
		{ChartTimeline, func() (*plot.Plot, error) { return timelinePlot(title+": per node", d.Nodes) }},
	}
	var names []string
	for _, f := range files {
		p, err := f.p()
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", f.name, err)
		}
		if err := savePlot(p, filepath.Join(dir, f.name)); err != nil {
			return nil, err
		}
		names = append(names, f.name)
	}
	return names, nil
}

func savePlot(p *plot.Plot, path string) error {
	w, err := p.WriterTo(7*vg.Inch, 4.5*vg.Inch, "svg")
	if err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	return nil
}

// cdfPlot draws the empirical CDF of values (the fraction of nodes at or
// below each value) as a step line.
func cdfPlot(title, xlabel, series string, values []float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = "fraction of nodes"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top, p.Legend.Left = false, false
	s := slices.Clone(values)
	slices.Sort(s)
	pts := make(plotter.XYs, 0, len(s)+1)
	if len(s) > 0 {
		pts = append(pts, plotter.XY{X: s[0], Y: 0})
	}
	for i, v := range s {
		pts = append(pts, plotter.XY{X: v, Y: float64(i+1) / float64(len(s))})
	}
	if len(pts) == 0 {
		p.Title.Text += " (no node)"
		return p, nil
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	l.StepStyle = plotter.PostStep
	l.Color = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	l.Width = vg.Points(1.5)
	p.Add(l, plotter.NewGrid())
	p.Legend.Add(fmt.Sprintf("%s (%d nodes)", series, len(s)), l)
	return p, nil
}

// timelinePlot draws, for each node (a row), when it received a
// sighting, saw the block committed and enforced it.
func timelinePlot(title string, nodes []NodeReport) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "ms after the first detection"
	p.Y.Label.Text = "node"
	p.Legend.Top, p.Legend.Left = false, false
	series := []struct {
		name  string
		value func(NodeReport) float64
		shape draw.GlyphDrawer
		color color.Color
	}{
		{SeriesReceived, func(n NodeReport) float64 { return n.PropagationMs }, draw.CircleGlyph{}, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}},
		{SeriesCommitted, func(n NodeReport) float64 { return n.CommitMs }, draw.TriangleGlyph{}, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}},
		{SeriesEnforced, func(n NodeReport) float64 { return n.EnforceMs }, draw.SquareGlyph{}, color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}},
	}
	for _, s := range series {
		var pts plotter.XYs
		for i, n := range nodes {
			if v := s.value(n); v >= 0 {
				pts = append(pts, plotter.XY{X: v, Y: float64(i)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return nil, err
		}
		sc.Shape, sc.Color, sc.Radius = s.shape, s.color, vg.Points(2.5)
		p.Add(sc)
		p.Legend.Add(s.name, sc)
	}
	if len(nodes) <= 30 {
		names := make([]string, len(nodes))
		for i, n := range nodes {
			names[i] = n.Site
		}
		p.NominalY(names...)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

// ChartData returns what the charts of a brute-force report draw.
func (r *Report) ChartData() ChartData {
	return ChartData{Title: "brute force", Indicator: r.Indicator, Nodes: r.PerNode}
}

// ChartData returns what the charts of a scenario report draw.
func (r *ScenarioReport) ChartData() ChartData {
	return ChartData{Title: r.Scenario, Indicator: r.Indicator, Nodes: r.PerNode}
}
