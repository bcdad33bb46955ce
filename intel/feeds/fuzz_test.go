package feeds

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/meshward/meshward/intel"
)

// Whatever the bytes, the plain parser neither panics nor hands on an
// entry that is not a valid, canonical indicator; an error is a *Error.
func FuzzParsePlain(f *testing.F) {
	for _, s := range []string{"1.2.3.4\n", "# c\n; c\n\n", "0.0.0.0 evil.example\n", "evil.example ; x\n", "\xef\xbb\xbf10.0.0.0/8", "http://x.example/#a b", "\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParse(t, func(fn func(Entry) error) (Stats, error) {
			return ParsePlain(bytes.NewReader(b), Options{File: "fuzz"}, fn)
		})
	})
}

// Whatever the bytes and options, the CSV parser neither panics nor hands
// on an invalid indicator.
func FuzzParseCSV(f *testing.F) {
	f.Add([]byte("ip,x\n1.2.3.4,a\n"), 0, true, ",")
	f.Add([]byte("\"1.2.3.4\";\"a\"\n"), 1, false, ";")
	f.Add([]byte("a\tb\n\"x\n"), 3, false, "\t")
	f.Fuzz(func(t *testing.T, b []byte, col int, header bool, delim string) {
		checkParse(t, func(fn func(Entry) error) (Stats, error) {
			return ParseCSV(bytes.NewReader(b), CSVOptions{Column: col % 8, Header: header, Delimiter: delim}, Options{File: "fuzz"}, fn)
		})
	})
}

func checkParse(t *testing.T, parse func(fn func(Entry) error) (Stats, error)) {
	n := 0
	st, err := parse(func(e Entry) error {
		n++
		if verr := e.Indicator.Validate(); verr != nil {
			t.Fatalf("entry %+v: %v", e, verr)
		}
		if e.Indicator.Type == intel.Domain && !strings.Contains(e.Indicator.Value, ".") {
			t.Fatalf("single-label domain %q", e.Indicator.Value)
		}
		return nil
	})
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %T %v is not a *feeds.Error", err, err)
		}
	}
	if st.Entries != n {
		t.Fatalf("stats count %d entries, callback saw %d", st.Entries, n)
	}
}

// Whatever the bytes, a MISP event file or a JSON line neither panics the
// parser nor yields an invalid indicator.
func FuzzParseMISPEventAndJSONL(f *testing.F) {
	for _, p := range []string{"testdata/misp/5f8e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b.json", "testdata/misp/9b2c7d1e-6f5a-4b3c-9d8e-7f6a5b4c3d2e.json", "testdata/jsonl/feed.jsonl"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Event":{"uuid":"11111111-2222-4333-8444-555555555555","Attribute":[{"type":"domain|ip","value":"a.example|1.2.3.4","to_ids":"1"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParse(t, func(fn func(Entry) error) (Stats, error) {
			return ParseMISPEvent(bytes.NewReader(b), Options{File: "fuzz"}, fn)
		})
		checkParse(t, func(fn func(Entry) error) (Stats, error) {
			return ParseJSONL(bytes.NewReader(b), JSONLOptions{Field: "ioc.value"}, Options{File: "fuzz"}, fn)
		})
	})
}
