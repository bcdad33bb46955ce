package feeds

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// What each exporter writes reads back through the parser of its format
// as the same indicators, with the TLP surviving the MISP round trip.
func TestExportRoundTrip(t *testing.T) {
	var src []Entry
	if _, err := ParseMISP(DirOpener(os.DirFS("testdata/misp")), Options{File: "misp", Feed: "circl"}, collect(&src)); err != nil {
		t.Fatal(err)
	}
	keys := func(es []Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Indicator.Key()+" "+e.TLP)
		}
		return out
	}
	noTLP := func(es []Entry) []Entry {
		out := make([]Entry, len(es))
		for i, e := range es {
			e.TLP = ""
			out[i] = e
		}
		return out
	}
	check := func(name string, got, want []Entry) {
		t.Helper()
		g, w := keys(got), keys(want)
		if len(g) != len(w) {
			t.Fatalf("%s: %d entries back, want %d:\n%q\n%q", name, len(g), len(w), g, w)
		}
		for i := range g {
			if g[i] != w[i] {
				t.Errorf("%s: entry %d = %q, want %q", name, i, g[i], w[i])
			}
		}
	}

	dir := filepath.Join(t.TempDir(), "feed")
	m, err := NewMISPExporter(dir, "meshward export", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range src {
		if err := m.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var back []Entry
	st, err := ParseMISP(DirOpener(os.DirFS(dir)), Options{File: "export", Strict: true}, collect(&back))
	if err != nil || st.SkippedTotal() != 0 {
		t.Fatalf("read back the MISP export: %+v, %v", st, err)
	}
	check("misp", back, src)
	if back[0].Feed != "" || !containsStr(back[0].Labels, `meshward:source="circl"`) {
		t.Errorf("the source is not tagged: %+v", back[0])
	}

	var buf bytes.Buffer
	c := NewCSVExporter(&buf)
	for _, e := range src {
		if err := c.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	back = nil
	if _, err := ParseCSV(&buf, CSVOptions{ColumnName: "value"}, Options{File: "export.csv", Strict: true}, collect(&back)); err != nil {
		t.Fatal(err)
	}
	check("csv", back, noTLP(src))

	buf.Reset()
	p := NewPlainExporter(&buf, "meshward export\nfeed circl")
	for _, e := range src {
		if err := p.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	back = nil
	if _, err := ParsePlain(&buf, Options{File: "export.txt", Strict: true}, collect(&back)); err != nil {
		t.Fatal(err)
	}
	check("plain", back, noTLP(src))
}
