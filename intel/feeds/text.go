package feeds

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLine is the longest line the line-based parsers read; a longer line
// is an error naming it (a feed with such lines is not what it claims).
const MaxLine = 1 << 20

// newScanner reads lines of at most MaxLine bytes.
func newScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	return sc
}

func scanErr(o Options, line int, err error) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return &Error{Pos: Position{File: o.File, Line: line}, Reason: "format", Err: fmt.Errorf("%w: line longer than %d bytes", ErrTooLarge, MaxLine)}
	}
	return &Error{Pos: Position{File: o.File, Line: line}, Reason: "format", Err: fmt.Errorf("read: %w", err)}
}

// hostsSinks are the addresses hosts-file blocklists point names at.
var hostsSinks = map[string]bool{"0.0.0.0": true, "127.0.0.1": true, "::": true, "::1": true}

// ParsePlain reads a plain list: one IP address, CIDR, domain, URL or hash
// a line. Blank lines and lines starting with '#' or ';' are skipped; so
// is anything after the value that follows whitespace (a trailing
// comment, or a column such as a count). Hosts-file lines ("0.0.0.0
// evil.example") give the name.
func ParsePlain(r io.Reader, o Options, fn func(Entry) error) (Stats, error) {
	var st Stats
	em := &emitter{o: o, stats: &st, fn: fn}
	sc := newScanner(r)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a byte-order mark
		}
		if len(b) == 0 || b[0] == '#' || b[0] == ';' {
			continue
		}
		first, rest := cutSpace(b)
		v := string(first)
		if second, _ := cutSpace(rest); len(second) > 0 && second[0] != '#' && second[0] != ';' && hostsSinks[v] {
			v = string(second)
			if v == "localhost" || strings.HasPrefix(v, "localhost.") || v == "broadcasthost" {
				continue
			}
		}
		if !utf8.ValidString(v) {
			if err := em.bad(Position{File: o.File, Line: line}, SkipInvalid, fmt.Errorf("%w: not valid UTF-8", ErrInvalidValue)); err != nil {
				return st, err
			}
			continue
		}
		if err := em.value(Position{File: o.File, Line: line}, v, Entry{}); err != nil {
			return st, err
		}
	}
	if err := sc.Err(); err != nil {
		return st, scanErr(o, line+1, err)
	}
	return st, nil
}

// CSVOptions choose the column of a CSV feed.
type CSVOptions struct {
	// Column is the 0-based index of the value's column, used when
	// ColumnName is empty.
	Column int `yaml:"column" json:"column,omitempty"`
	// ColumnName picks the column by its header (implies Header).
	ColumnName string `yaml:"column_name" json:"column_name,omitempty"`
	// Delimiter is the field separator, ',' when empty.
	Delimiter string `yaml:"delimiter" json:"delimiter,omitempty"`
	// Header says the first record is a header to skip.
	Header bool `yaml:"header" json:"header,omitempty"`
}

// Validate checks the options; errors name the field.
func (c CSVOptions) Validate() error {
	if c.Column < 0 {
		return fmt.Errorf("column: %d must not be negative", c.Column)
	}
	if c.Delimiter != "" {
		r, n := utf8.DecodeRuneInString(c.Delimiter)
		if n != len(c.Delimiter) || r == utf8.RuneError || r == '"' || r == '\r' || r == '\n' {
			return fmt.Errorf("delimiter: %q must be one character other than a quote or a line break", c.Delimiter)
		}
	}
	return nil
}

// ParseCSV reads a CSV feed (RFC 4180 quoting; lines starting with '#'
// are comments), taking the value from the chosen column.
func ParseCSV(r io.Reader, c CSVOptions, o Options, fn func(Entry) error) (Stats, error) {
	var st Stats
	if err := c.Validate(); err != nil {
		return st, &Error{Pos: Position{File: o.File}, Reason: "format", Err: fmt.Errorf("%w: csv options: %w", ErrFormat, err)}
	}
	em := &emitter{o: o, stats: &st, fn: fn}
	cr := csv.NewReader(&lineLimit{r: r})
	if c.Delimiter != "" {
		cr.Comma, _ = utf8.DecodeRuneInString(c.Delimiter)
	}
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	col := c.Column
	header := c.Header || c.ColumnName != ""
	first := true
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return st, &Error{Pos: Position{File: o.File, Line: pe.Line}, Reason: "format", Err: fmt.Errorf("%w: csv: %w", ErrFormat, pe.Err)}
			}
			if errors.Is(err, ErrTooLarge) {
				return st, &Error{Pos: Position{File: o.File}, Reason: "format", Err: err}
			}
			return st, &Error{Pos: Position{File: o.File}, Reason: "format", Err: fmt.Errorf("read: %w", err)}
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			if len(rec) > 0 {
				rec[0] = strings.TrimPrefix(rec[0], "\xef\xbb\xbf")
			}
			if header {
				if c.ColumnName != "" {
					col = -1
					for i, h := range rec {
						if strings.EqualFold(strings.TrimSpace(h), c.ColumnName) {
							col = i
							break
						}
					}
					if col < 0 {
						return st, &Error{Pos: Position{File: o.File, Line: line}, Reason: "format",
							Err: fmt.Errorf("%w: header has no column %q (columns: %s)", ErrFormat, c.ColumnName, strings.Join(rec, ", "))}
					}
				}
				continue
			}
		}
		pos := Position{File: o.File, Line: line}
		if col >= len(rec) {
			if err := em.bad(pos, SkipEmpty, fmt.Errorf("%w: record has %d fields, no column %d", ErrInvalidValue, len(rec), col)); err != nil {
				return st, err
			}
			continue
		}
		if err := em.value(pos, rec[col], Entry{}); err != nil {
			return st, err
		}
	}
	return st, nil
}

// lineLimit fails a read once a line runs past MaxLine bytes, so a CSV
// quoted field cannot grow without bound.
type lineLimit struct {
	r   io.Reader
	run int
}

func (l *lineLimit) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			l.run = 0
			continue
		}
		l.run++
		if l.run > MaxLine {
			return 0, fmt.Errorf("%w: a line or quoted field longer than %d bytes", ErrTooLarge, MaxLine)
		}
	}
	return n, err
}

// JSONLOptions choose the field of a JSON-lines feed.
type JSONLOptions struct {
	// Field is the name of the value's field; a dotted path ("ioc.value")
	// reaches into objects.
	Field string `yaml:"field" json:"field,omitempty"`
}

// Validate checks the options.
func (j JSONLOptions) Validate() error {
	if j.Field == "" {
		return errors.New("field: required")
	}
	for _, p := range strings.Split(j.Field, ".") {
		if p == "" {
			return fmt.Errorf("field: %q has an empty path element", j.Field)
		}
	}
	return nil
}

// ParseJSONL reads JSON lines: one object a line, the value in the chosen
// field. Blank lines are skipped; a line that is not a JSON object is an
// error naming it.
func ParseJSONL(r io.Reader, j JSONLOptions, o Options, fn func(Entry) error) (Stats, error) {
	var st Stats
	if err := j.Validate(); err != nil {
		return st, &Error{Pos: Position{File: o.File}, Reason: "format", Err: fmt.Errorf("%w: jsonl options: %w", ErrFormat, err)}
	}
	em := &emitter{o: o, stats: &st, fn: fn}
	path := strings.Split(j.Field, ".")
	sc := newScanner(r)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		pos := Position{File: o.File, Line: line}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return st, &Error{Pos: pos, Reason: "format", Err: fmt.Errorf("%w: not a JSON object: %w", ErrFormat, err)}
		}
		raw, ok := lookup(obj, path)
		if !ok {
			if err := em.bad(pos, SkipEmpty, fmt.Errorf("%w: no field %q", ErrInvalidValue, j.Field)); err != nil {
				return st, err
			}
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			if err := em.bad(pos, SkipNotValue, fmt.Errorf("%w: field %q is not a string", ErrInvalidValue, j.Field)); err != nil {
				return st, err
			}
			continue
		}
		e := Entry{}
		if t, ok := stringField(obj, "first_seen"); ok {
			e.FirstSeen, _ = parseTime(t)
		}
		if t, ok := stringField(obj, "last_seen"); ok {
			e.LastSeen, _ = parseTime(t)
		}
		if c, ok := obj["confidence"]; ok {
			if n, err := strconv.Atoi(string(c)); err == nil && n >= 0 && n <= 100 {
				e.Confidence = n
			}
		}
		if err := em.value(pos, v, e); err != nil {
			return st, err
		}
	}
	if err := sc.Err(); err != nil {
		return st, scanErr(o, line+1, err)
	}
	return st, nil
}

func lookup(obj map[string]json.RawMessage, path []string) (json.RawMessage, bool) {
	raw, ok := obj[path[0]]
	if !ok {
		return nil, false
	}
	if len(path) == 1 {
		return raw, true
	}
	var inner map[string]json.RawMessage
	if json.Unmarshal(raw, &inner) != nil {
		return nil, false
	}
	return lookup(inner, path[1:])
}

func stringField(obj map[string]json.RawMessage, k string) (string, bool) {
	raw, ok := obj[k]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// cutSpace splits b at its first run of spaces or tabs.
func cutSpace(b []byte) (first, rest []byte) {
	i := bytes.IndexAny(b, " \t")
	if i < 0 {
		return b, nil
	}
	return b[:i], bytes.TrimLeft(b[i:], " \t")
}
