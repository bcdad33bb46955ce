package detectors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/meshward/meshward/intel"
)

// goldenMaxLine is the line limit of the golden cases, small so that the
// cases can show lines cut at it.
const goldenMaxLine = 512

// TestParsersGolden runs every testdata/parse/<case>/input through the
// line reader and the parsers and compares one JSON object per line, then
// the counters, with testdata/parse/<case>/expected (-update rewrites).
func TestParsersGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "parse", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in, err := os.Open(filepath.Join(dir, "input"))
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			counts := map[string]int{}
			n := 0
			ls, err := ReadLines(in, goldenMaxLine, func(line []byte) {
				n++
				var ev Event
				res := parseLine(string(line), &ev)
				out := map[string]any{"line": n, "result": [...]string{"ignored", "matched", "malformed", "local"}[res]}
				counts[out["result"].(string)]++
				if !utf8.Valid(line) {
					out["non_utf8"] = true
					counts["non_utf8"]++
				}
				if res == resMatched || res == resLocal {
					out["event"] = eventJSON(&ev)
				}
				if err := enc.Encode(out); err != nil {
					t.Fatal(err)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			counts["lines"], counts["truncated"] = int(ls.Lines), int(ls.Truncated)
			if err := enc.Encode(counts); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join(dir, "expected"), buf.Bytes())
		})
	}
}

// eventJSON renders the set fields of an event.
func eventJSON(ev *Event) map[string]any {
	m := map[string]any{"kind": ev.Kind.String()}
	if ev.Src.IsValid() {
		m["src"] = ev.Src.String()
	}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	num := func(k string, v int) {
		if v != 0 {
			m[k] = v
		}
	}
	set("program", ev.Program)
	set("user", fmt.Sprintf("%q", ev.User)[1:len(fmt.Sprintf("%q", ev.User))-1])
	set("method", ev.Method)
	set("path", ev.Path)
	set("proto", ev.Proto)
	set("tag", ev.Tag)
	set("stamp", ev.Stamp)
	set("agent", ev.Agent)
	set("host", ev.Host)
	num("port", int(ev.Port))
	num("dst_port", int(ev.DstPort))
	num("status", ev.Status)
	if ev.Dst.IsValid() {
		m["dst"] = ev.Dst.String()
	}
	if ev.invalid {
		m["invalid_user"] = true
	}
	return m
}

// TestRulesGolden runs the built-in pack, plus the *.yaml rules of the
// case directory, over testdata/rules/<case>/input and compares the
// sightings and counters with expected. 192.0.2.0/24 is allowed.
func TestRulesGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "rules", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			rs, err := LoadRules(dir)
			if err != nil {
				t.Fatal(err)
			}
			e, err := NewRulesEngine(rs, EngineOptions{Now: fixedNow, Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
			if err != nil {
				t.Fatal(err)
			}
			in, err := os.Open(filepath.Join(dir, "input"))
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			var got []intel.Sighting
			if _, err := ReadLines(in, 0, func(l []byte) {
				e.Process(l, func(s intel.Sighting) {
					if err := s.Validate(); err != nil {
						t.Errorf("invalid sighting %+v: %v", s, err)
					}
					got = append(got, s)
				})
			}); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join(dir, "expected"), render(t, got, e.Stats()))
		})
	}
}

// TestParsersDoNotAllocate parses every golden input line of every family
// that is not malformed and fails if parsing allocates.
func TestParsersDoNotAllocate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "parse", "*", "input"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	var lines []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(string(data), "\n")...)
	}
	// A malformed address may cost netip.ParseAddr's error: those lines
	// are left out.
	var ok []string
	for _, l := range lines {
		var ev Event
		if parseLine(l, &ev) != resMalformed {
			ok = append(ok, l)
		}
	}
	var ev Event
	if n := testing.AllocsPerRun(10, func() {
		for _, l := range ok {
			ev = Event{}
			parseLine(l, &ev)
		}
	}); n != 0 {
		t.Errorf("parsing %d lines allocates %v times", len(ok), n)
	}
}
