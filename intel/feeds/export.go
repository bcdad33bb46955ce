package feeds

import (
	"bufio"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
)

// Exporter writes entries in a feed format, one at a time; Close finishes
// the output.
type Exporter interface {
	Write(Entry) error
	Close() error
}

var (
	_ Exporter = (*PlainExporter)(nil)
	_ Exporter = (*CSVExporter)(nil)
	_ Exporter = (*MISPExporter)(nil)
)

// EntryFromReport is the entry an indicator report stands for: the
// reverse of Entry.Report ("tlp:" and "cve:" labels back to fields).
func EntryFromReport(r intel.IndicatorReport) Entry {
	e := Entry{
		Indicator: r.Indicator, Feed: r.Source, Confidence: r.Confidence, Technique: r.Technique,
		Description: r.Description, ValidFrom: r.ValidFrom, ValidUntil: r.ValidUntil,
	}
	for _, l := range r.Labels {
		switch {
		case strings.HasPrefix(l, "tlp:"):
			if t, err := ParseTLP(l); err == nil {
				e.TLP = t
				continue
			}
		case strings.HasPrefix(l, "cve:"):
			e.CVEs = append(e.CVEs, strings.TrimPrefix(l, "cve:"))
			continue
		}
		e.Labels = append(e.Labels, l)
	}
	return e
}

// PlainExporter writes one value a line under a comment header.
type PlainExporter struct {
	w      *bufio.Writer
	header string
	n      int
}

// NewPlainExporter writes to w; header, when set, is written first as
// '#' comment lines.
func NewPlainExporter(w io.Writer, header string) *PlainExporter {
	return &PlainExporter{w: bufio.NewWriter(w), header: header}
}

func (p *PlainExporter) Write(e Entry) error {
	if p.n == 0 && p.header != "" {
		for _, l := range strings.Split(p.header, "\n") {
			fmt.Fprintf(p.w, "# %s\n", l)
		}
	}
	p.n++
	_, err := fmt.Fprintln(p.w, e.Indicator.Value)
	return err
}

func (p *PlainExporter) Close() error { return p.w.Flush() }

// CSVHeader is the header row CSVExporter writes.
var CSVHeader = []string{"type", "value", "feed", "confidence", "tlp", "valid_from", "valid_until", "first_seen", "last_seen", "technique", "cves", "labels"}

// CSVExporter writes entries as CSV with CSVHeader; lists are joined with
// ';' and times are RFC 3339.
type CSVExporter struct {
	w *csv.Writer
	n int
}

// NewCSVExporter writes to w.
func NewCSVExporter(w io.Writer) *CSVExporter { return &CSVExporter{w: csv.NewWriter(w)} }

func (c *CSVExporter) Write(e Entry) error {
	if c.n == 0 {
		if err := c.w.Write(CSVHeader); err != nil {
			return err
		}
	}
	c.n++
	conf := ""
	if e.Confidence > 0 {
		conf = strconv.Itoa(e.Confidence)
	}
	return c.w.Write([]string{string(e.Indicator.Type), e.Indicator.Value, e.Feed, conf, e.TLP,
		fmtTime(e.ValidFrom), fmtTime(e.ValidUntil), fmtTime(e.FirstSeen), fmtTime(e.LastSeen),
		e.Technique, strings.Join(e.CVEs, ";"), strings.Join(e.Labels, ";")})
}

func (c *CSVExporter) Close() error {
	if c.n == 0 {
		if err := c.w.Write(CSVHeader); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// mispExportTypes maps indicator types to MISP attribute types.
var mispExportTypes = map[intel.IndicatorType]string{
	intel.IPv4: "ip-dst", intel.IPv6: "ip-dst", intel.CIDR: "ip-dst", intel.Domain: "domain",
	intel.URL: "url", intel.MD5: "md5", intel.SHA1: "sha1", intel.SHA256: "sha256",
}

// MISPExporter writes a MISP feed directory: one event holding every
// entry as an attribute (to_ids true, the entry's TLP and labels as
// tags), and manifest.json listing it. The event file is streamed, so an
// export of millions of entries holds one at a time; Close writes the
// manifest, which makes the feed visible.
type MISPExporter struct {
	dir, uuid, info string
	now             time.Time
	f               *os.File
	w               *bufio.Writer
	n               int
}

// NewMISPExporter starts a feed in dir (created if missing) with one event
// titled info, dated now.
func NewMISPExporter(dir, info string, now time.Time) (*MISPExporter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("misp export: %w", err)
	}
	id, err := newUUID()
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".event-*.json")
	if err != nil {
		return nil, fmt.Errorf("misp export: %w", err)
	}
	m := &MISPExporter{dir: dir, uuid: id, info: info, now: now.UTC(), f: f, w: bufio.NewWriter(f)}
	head, _ := json.Marshal(map[string]any{
		"uuid": id, "info": info, "date": m.now.Format("2006-01-02"), "threat_level_id": "4", "analysis": "2",
		"timestamp": strconv.FormatInt(m.now.Unix(), 10), "published": true,
		"Orgc": map[string]string{"name": "meshward"},
	})
	// The attributes follow the event's fields.
	fmt.Fprintf(m.w, "{\"Event\":%s,\"Attribute\":[", head[:len(head)-1])
	return m, nil
}

// UUID is the exported event's UUID.
func (m *MISPExporter) UUID() string { return m.uuid }

func (m *MISPExporter) Write(e Entry) error {
	typ, ok := mispExportTypes[e.Indicator.Type]
	if !ok {
		return fmt.Errorf("misp export: indicator type %q has no MISP type", e.Indicator.Type)
	}
	id, err := newUUID()
	if err != nil {
		return err
	}
	a := map[string]any{
		"uuid": id, "type": typ, "category": "Network activity", "value": e.Indicator.Value, "to_ids": true,
		"timestamp": strconv.FormatInt(m.now.Unix(), 10), "comment": e.Description, "deleted": false,
	}
	if intel.IsHash(e.Indicator.Type) {
		a["category"] = "Payload delivery"
	}
	if !e.FirstSeen.IsZero() {
		a["first_seen"] = e.FirstSeen.UTC().Format(time.RFC3339)
	}
	if !e.LastSeen.IsZero() {
		a["last_seen"] = e.LastSeen.UTC().Format(time.RFC3339)
	}
	var tags []mispTag
	if e.TLP != "" {
		tags = append(tags, mispTag{Name: "tlp:" + e.TLP})
	}
	if e.Feed != "" {
		tags = append(tags, mispTag{Name: "meshward:source=\"" + e.Feed + "\""})
	}
	for _, l := range e.Labels {
		tags = append(tags, mispTag{Name: l})
	}
	if len(tags) > 0 {
		a["Tag"] = tags
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if m.n > 0 {
		m.w.WriteByte(',')
	}
	m.n++
	_, err = m.w.Write(b)
	return err
}

// Close finishes the event file and writes manifest.json.
func (m *MISPExporter) Close() error {
	if m.f == nil {
		return nil
	}
	f := m.f
	m.f = nil
	m.w.WriteString("]}}\n")
	err := m.w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(m.dir, m.uuid+".json"))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("misp export: %w", err)
	}
	manifest := map[string]any{m.uuid: map[string]any{
		"info": m.info, "date": m.now.Format("2006-01-02"), "threat_level_id": 4, "analysis": 2,
		"timestamp": strconv.FormatInt(m.now.Unix(), 10), "Orgc": map[string]string{"name": "meshward"}, "Tag": []mispTag{},
	}}
	b, _ := json.MarshalIndent(manifest, "", "  ")
	if err := os.WriteFile(filepath.Join(m.dir, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("misp export: %w", err)
	}
	return nil
}

func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
