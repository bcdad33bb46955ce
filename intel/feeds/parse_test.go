package feeds

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// describe renders what a parse produced, one entry a line and the stats
// last, for golden comparison.
func describe(entries []Entry, st Stats, err error) string {
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s", e.Indicator.Key())
		if e.Feed != "" {
			fmt.Fprintf(&b, " feed=%s", e.Feed)
		}
		if e.Confidence > 0 {
			fmt.Fprintf(&b, " confidence=%d", e.Confidence)
		}
		if e.TLP != "" {
			fmt.Fprintf(&b, " tlp=%s", e.TLP)
		}
		if e.Technique != "" {
			fmt.Fprintf(&b, " technique=%s", e.Technique)
		}
		if len(e.CVEs) > 0 {
			fmt.Fprintf(&b, " cves=%s", strings.Join(e.CVEs, ","))
		}
		if len(e.Labels) > 0 {
			fmt.Fprintf(&b, " labels=%q", e.Labels)
		}
		if !e.FirstSeen.IsZero() {
			fmt.Fprintf(&b, " first_seen=%s", e.FirstSeen.Format(time.RFC3339))
		}
		if !e.LastSeen.IsZero() {
			fmt.Fprintf(&b, " last_seen=%s", e.LastSeen.Format(time.RFC3339))
		}
		if e.Description != "" {
			fmt.Fprintf(&b, " description=%q", e.Description)
		}
		b.WriteByte('\n')
	}
	js, _ := json.MarshalIndent(st, "", "  ")
	fmt.Fprintf(&b, "stats: %s\n", js)
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

func collect(entries *[]Entry) func(Entry) error {
	return func(e Entry) error { *entries = append(*entries, e); return nil }
}

// Each format's real file parses to the golden list of entries and skips.
func TestGolden(t *testing.T) {
	open := func(p string) *os.File {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	cases := map[string]func(fn func(Entry) error) (Stats, error){
		"plain": func(fn func(Entry) error) (Stats, error) {
			return ParsePlain(open("testdata/plain/feed.txt"), Options{File: "plain/feed.txt", Feed: "blocklist"}, fn)
		},
		"csv": func(fn func(Entry) error) (Stats, error) {
			return ParseCSV(open("testdata/csv/feed.csv"), CSVOptions{ColumnName: "dst_ip"}, Options{File: "csv/feed.csv"}, fn)
		},
		"csv-index": func(fn func(Entry) error) (Stats, error) {
			return ParseCSV(open("testdata/csv/feed.csv"), CSVOptions{Column: 1, Header: true}, Options{File: "csv/feed.csv"}, fn)
		},
		"jsonl": func(fn func(Entry) error) (Stats, error) {
			return ParseJSONL(open("testdata/jsonl/feed.jsonl"), JSONLOptions{Field: "ioc.value"}, Options{File: "jsonl/feed.jsonl"}, fn)
		},
		"misp": func(fn func(Entry) error) (Stats, error) {
			return ParseMISP(DirOpener(os.DirFS("testdata/misp")), Options{File: "misp", Feed: "circl"}, fn)
		},
	}
	for name, parse := range cases {
		t.Run(name, func(t *testing.T) {
			var got []Entry
			st, err := parse(collect(&got))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			golden(t, name, describe(got, st, nil))
			// The counting pass agrees with the full one.
			cst, err := Check(parse)
			if err != nil || cst.Entries != st.Entries || cst.SkippedTotal() != st.SkippedTotal() {
				t.Errorf("check pass: %+v, %v; parse pass: %+v", cst, err, st)
			}
		})
	}
}

// In strict mode the first invalid value is an error naming its position.
func TestStrictNamesThePosition(t *testing.T) {
	cases := []struct {
		name, want string
		parse      func() error
	}{
		{"plain", "plain/feed.txt:14: invalid feed value", func() error {
			f, _ := os.Open("testdata/plain/feed.txt")
			defer f.Close()
			_, err := ParsePlain(f, Options{File: "plain/feed.txt", Strict: true}, func(Entry) error { return nil })
			return err
		}},
		{"csv", "csv/feed.csv:5: invalid feed value", func() error {
			f, _ := os.Open("testdata/csv/feed.csv")
			defer f.Close()
			_, err := ParseCSV(f, CSVOptions{ColumnName: "dst_ip"}, Options{File: "csv/feed.csv", Strict: true}, func(Entry) error { return nil })
			return err
		}},
		{"jsonl", "jsonl/feed.jsonl:4: invalid feed value", func() error {
			f, _ := os.Open("testdata/jsonl/feed.jsonl")
			defer f.Close()
			_, err := ParseJSONL(f, JSONLOptions{Field: "ioc.value"}, Options{File: "jsonl/feed.jsonl", Strict: true}, func(Entry) error { return nil })
			return err
		}},
		{"misp", "misp/5f8e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b.json: event 5f8e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b attribute 7: invalid feed value", func() error {
			_, err := ParseMISP(DirOpener(os.DirFS("testdata/misp")), Options{File: "misp", Strict: true}, func(Entry) error { return nil })
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.parse()
			if !errors.Is(err, ErrInvalidValue) || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error %v, want one starting %q", err, c.want)
			}
		})
	}
}

// Malformed input of every format is an error naming file and position,
// never a panic or a silent stop.
func TestMalformed(t *testing.T) {
	long := strings.Repeat("a", MaxLine+10)
	cases := []struct {
		name, want string
		is         error
		parse      func() error
	}{
		{"plain line too long", "f.txt:2: feed too large", ErrTooLarge, func() error {
			_, err := ParsePlain(strings.NewReader("1.2.3.4\n"+long+"\n"), Options{File: "f.txt"}, func(Entry) error { return nil })
			return err
		}},
		{"csv bare quote", "f.csv:2: malformed feed", ErrFormat, func() error {
			_, err := ParseCSV(strings.NewReader("ip\n1.2\"3.4,x\n"), CSVOptions{}, Options{File: "f.csv"}, func(Entry) error { return nil })
			return err
		}},
		{"csv unterminated quote", "f.csv", ErrFormat, func() error {
			_, err := ParseCSV(strings.NewReader("\"1.2.3.4,x\n5.6.7.8\n"), CSVOptions{}, Options{File: "f.csv"}, func(Entry) error { return nil })
			return err
		}},
		{"csv quoted field without end", "f.csv", ErrTooLarge, func() error {
			_, err := ParseCSV(strings.NewReader("\""+long), CSVOptions{}, Options{File: "f.csv"}, func(Entry) error { return nil })
			return err
		}},
		{"csv missing header column", "f.csv:1: malformed feed: header has no column \"ip\"", ErrFormat, func() error {
			_, err := ParseCSV(strings.NewReader("a,b\n1.2.3.4,x\n"), CSVOptions{ColumnName: "ip"}, Options{File: "f.csv"}, func(Entry) error { return nil })
			return err
		}},
		{"csv bad delimiter", "f.csv: malformed feed: csv options: delimiter", ErrFormat, func() error {
			_, err := ParseCSV(strings.NewReader("a"), CSVOptions{Delimiter: "ab"}, Options{File: "f.csv"}, func(Entry) error { return nil })
			return err
		}},
		{"jsonl not json", "f.jsonl:2: malformed feed: not a JSON object", ErrFormat, func() error {
			_, err := ParseJSONL(strings.NewReader("{\"v\":\"1.2.3.4\"}\n{\"v\": \n"), JSONLOptions{Field: "v"}, Options{File: "f.jsonl"}, func(Entry) error { return nil })
			return err
		}},
		{"jsonl array", "f.jsonl:1: malformed feed", ErrFormat, func() error {
			_, err := ParseJSONL(strings.NewReader("[\"1.2.3.4\"]\n"), JSONLOptions{Field: "v"}, Options{File: "f.jsonl"}, func(Entry) error { return nil })
			return err
		}},
		{"misp manifest not json", "m/manifest.json: malformed feed", ErrFormat, func() error {
			_, err := ParseMISP(mapOpener(map[string]string{"manifest.json": "{"}), Options{File: "m"}, func(Entry) error { return nil })
			return err
		}},
		{"misp manifest key not a uuid", "m/manifest.json: malformed feed: event key \"../../etc/passwd\" is not a UUID", ErrFormat, func() error {
			_, err := ParseMISP(mapOpener(map[string]string{"manifest.json": `{"../../etc/passwd": {}}`}), Options{File: "m"}, func(Entry) error { return nil })
			return err
		}},
		{"misp event missing", "m/11111111-2222-4333-8444-555555555555.json: event 11111111-2222-4333-8444-555555555555: open", nil, func() error {
			_, err := ParseMISP(mapOpener(map[string]string{"manifest.json": `{"11111111-2222-4333-8444-555555555555": {}}`}), Options{File: "m"}, func(Entry) error { return nil })
			return err
		}},
		{"misp event without Event", "event 11111111-2222-4333-8444-555555555555: malformed feed: no \"Event\"", ErrFormat, func() error {
			_, err := ParseMISP(mapOpener(map[string]string{"manifest.json": `{"11111111-2222-4333-8444-555555555555": {}}`,
				"11111111-2222-4333-8444-555555555555.json": `{"Events": {}}`}), Options{File: "m"}, func(Entry) error { return nil })
			return err
		}},
		{"misp event of another uuid", "holds event 99999999-2222-4333-8444-555555555555", ErrFormat, func() error {
			_, err := ParseMISP(mapOpener(map[string]string{"manifest.json": `{"11111111-2222-4333-8444-555555555555": {}}`,
				"11111111-2222-4333-8444-555555555555.json": `{"Event": {"uuid": "99999999-2222-4333-8444-555555555555", "Attribute": []}}`}), Options{File: "m"}, func(Entry) error { return nil })
			return err
		}},
		{"misp attribute value of wrong type", "malformed feed", ErrFormat, func() error {
			_, err := ParseMISPEvent(strings.NewReader(`{"Event": {"uuid": "11111111-2222-4333-8444-555555555555", "Attribute": [{"type": "ip-dst", "value": 7}]}}`), Options{File: "e.json"}, func(Entry) error { return nil })
			return err
		}},
		{"misp trailing data", "data after the JSON document", ErrFormat, func() error {
			_, err := ParseMISPEvent(strings.NewReader(`{"Event": {"uuid": "11111111-2222-4333-8444-555555555555", "Attribute": []}} {}`), Options{File: "e.json"}, func(Entry) error { return nil })
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.parse()
			if err == nil || !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
				t.Fatalf("error %v, want one containing %q (is %v)", err, c.want, c.is)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *feeds.Error", err)
			}
		})
	}
}

// mapOpener is a feed directory in memory.
func mapOpener(files map[string]string) Opener {
	return func(name string) (io.ReadCloser, error) {
		s, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
		}
		return io.NopCloser(strings.NewReader(s)), nil
	}
}

// A callback's error stops the parse and is returned as it is: the
// publisher can abort.
func TestCallbackErrorStops(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	_, err := ParsePlain(strings.NewReader("1.2.3.4\n5.6.7.8\n9.9.9.9\n"), Options{}, func(Entry) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("err %v after %d entries, want stop after 2", err, n)
	}
}

// Entry.Report fills the feed's defaults and carries TLP and CVEs as
// labels; the report validates.
func TestEntryReport(t *testing.T) {
	var got []Entry
	if _, err := ParseMISP(DirOpener(os.DirFS("testdata/misp")), Options{File: "misp"}, collect(&got)); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range got {
		r := e.Report("circl", 40, 24*time.Hour, now)
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", e.Indicator.Key(), err)
		}
		if r.Source != "circl" || !r.ValidUntil.Equal(now.Add(24*time.Hour)) {
			t.Errorf("%s: source %q valid until %s", e.Indicator.Key(), r.Source, r.ValidUntil)
		}
		if e.TLP != "" && !containsStr(r.Labels, "tlp:"+e.TLP) {
			t.Errorf("%s: labels %q lack tlp:%s", e.Indicator.Key(), r.Labels, e.TLP)
		}
		back := EntryFromReport(r)
		if back.TLP != e.TLP || len(back.CVEs) != len(e.CVEs) {
			t.Errorf("%s: round trip %+v", e.Indicator.Key(), back)
		}
	}
	plain := Entry{Indicator: got[0].Indicator}.Report("f", 40, 0, now)
	if plain.Confidence != 40 || !plain.ValidUntil.IsZero() {
		t.Errorf("defaults: %+v", plain)
	}
}
