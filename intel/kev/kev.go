// Package kev loads what the mesh knows about vulnerabilities: the CISA
// Known Exploited Vulnerabilities (KEV) catalog and CVE records in the NVD
// API 2.0 JSON format, whose CVSS 3.0, 3.1 and 4.0 vectors it scores with
// github.com/pandatix/go-cvss. Priority ranks a CVE from its score, raised
// when it is in KEV and more so when KEV knows it used by ransomware.
package kev

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"
)

// KEVFile is the catalog's file name, looked for when Load is given a
// directory.
const KEVFile = "known_exploited_vulnerabilities.json"

// MaxFileSize bounds a KEV catalog or NVD file (the KEV catalog is some
// 1.3 MB, an NVD API page of 2,000 CVEs some 30 MB, a yearly feed more).
var MaxFileSize int64 = 1 << 30

var cveID = regexp.MustCompile(`^CVE-\d{4}-\d{4,19}$`)

// Entry is one vulnerability of the KEV catalog.
type Entry struct {
	CVE              string    `json:"cve"`
	Vendor           string    `json:"vendor"`
	Product          string    `json:"product"`
	Name             string    `json:"name"`
	DateAdded        time.Time `json:"date_added"`
	DueDate          time.Time `json:"due_date"`
	ShortDescription string    `json:"short_description"`
	RequiredAction   string    `json:"required_action"`
	Notes            string    `json:"notes,omitempty"`
	CWEs             []string  `json:"cwes,omitempty"`
	// Ransomware is true when CISA knows the vulnerability used in
	// ransomware campaigns (knownRansomwareCampaignUse "Known").
	Ransomware bool `json:"ransomware"`
}

// Catalog is a loaded KEV catalog.
type Catalog struct {
	Name     string // the file it came from
	Title    string
	Version  string
	Released time.Time
	entries  map[string]*Entry
}

// kevEntry is an entry as the catalog's JSON spells it.
type kevEntry struct {
	CVEID             string   `json:"cveID"`
	VendorProject     string   `json:"vendorProject"`
	Product           string   `json:"product"`
	VulnerabilityName string   `json:"vulnerabilityName"`
	DateAdded         string   `json:"dateAdded"`
	ShortDescription  string   `json:"shortDescription"`
	RequiredAction    string   `json:"requiredAction"`
	DueDate           string   `json:"dueDate"`
	Ransomware        string   `json:"knownRansomwareCampaignUse"`
	Notes             string   `json:"notes"`
	CWEs              []string `json:"cwes"`
}

// Load reads the KEV catalog at path: the file, or a directory holding
// KEVFile.
func Load(path string) (*Catalog, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, KEVFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kev: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads a KEV catalog from r; name names it in errors. The catalog's
// count must match its entries, and each entry needs a valid CVE ID (once)
// and dates.
func Parse(r io.Reader, name string) (*Catalog, error) {
	lr := &io.LimitedReader{R: r, N: MaxFileSize + 1}
	dec := json.NewDecoder(lr)
	c := &Catalog{Name: name, entries: make(map[string]*Entry)}
	fail := func(err error) (*Catalog, error) {
		if lr.N <= 0 {
			return nil, fmt.Errorf("kev: %s: larger than %d bytes", name, MaxFileSize)
		}
		return nil, fmt.Errorf("kev: %s: at byte %d: %w", name, dec.InputOffset(), err)
	}
	count := -1
	var released string
	err := walkObject(dec, func(key string) error {
		switch key {
		case "title":
			return dec.Decode(&c.Title)
		case "catalogVersion":
			return dec.Decode(&c.Version)
		case "dateReleased":
			return dec.Decode(&released)
		case "count":
			return dec.Decode(&count)
		case "vulnerabilities":
			return walkArray(dec, func(i int) error {
				var e kevEntry
				if err := dec.Decode(&e); err != nil {
					return fmt.Errorf("vulnerability %d: %w", i+1, err)
				}
				if err := c.add(&e); err != nil {
					return fmt.Errorf("vulnerability %d (%s): %w", i+1, e.CVEID, err)
				}
				return nil
			})
		}
		return skipValue(dec)
	})
	if err != nil {
		return fail(err)
	}
	if c.Version == "" {
		return fail(errors.New("no catalogVersion: not a KEV catalog"))
	}
	if count != len(c.entries) {
		return fail(fmt.Errorf("count says %d vulnerabilities, the catalog has %d", count, len(c.entries)))
	}
	if released != "" {
		t, err := time.Parse(time.RFC3339Nano, released)
		if err != nil {
			return fail(fmt.Errorf("dateReleased: %w", err))
		}
		c.Released = t
	}
	return c, nil
}

func (c *Catalog) add(e *kevEntry) error {
	if !cveID.MatchString(e.CVEID) {
		return fmt.Errorf("cveID %q is not a CVE ID", e.CVEID)
	}
	if _, dup := c.entries[e.CVEID]; dup {
		return fmt.Errorf("%s is listed twice", e.CVEID)
	}
	added, err := time.Parse(time.DateOnly, e.DateAdded)
	if err != nil {
		return fmt.Errorf("dateAdded: %w", err)
	}
	due, err := time.Parse(time.DateOnly, e.DueDate)
	if err != nil {
		return fmt.Errorf("dueDate: %w", err)
	}
	var ransomware bool
	switch e.Ransomware {
	case "Known":
		ransomware = true
	case "Unknown", "":
	default:
		return fmt.Errorf("knownRansomwareCampaignUse %q, want Known or Unknown", e.Ransomware)
	}
	c.entries[e.CVEID] = &Entry{
		CVE: e.CVEID, Vendor: e.VendorProject, Product: e.Product, Name: e.VulnerabilityName,
		DateAdded: added, DueDate: due, ShortDescription: e.ShortDescription, RequiredAction: e.RequiredAction,
		Notes: e.Notes, CWEs: e.CWEs, Ransomware: ransomware,
	}
	return nil
}

// Lookup returns the catalog's entry for a CVE ID.
func (c *Catalog) Lookup(cve string) (*Entry, bool) {
	e, ok := c.entries[cve]
	return e, ok
}

// Len is the number of entries.
func (c *Catalog) Len() int { return len(c.entries) }

// Entries returns every entry, by CVE ID.
func (c *Catalog) Entries() []*Entry {
	out := make([]*Entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *Entry) int { return compareCVE(a.CVE, b.CVE) })
	return out
}

// compareCVE orders CVE IDs by year, then by number.
func compareCVE(a, b string) int {
	if len(a) != len(b) && a[:8] == b[:8] {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// walkObject reads a JSON object from dec, calling fn with each key with
// the decoder before its value; fn must consume the value.
func walkObject(dec *json.Decoder, fn func(key string) error) error {
	if err := expectDelim(dec, '{'); err != nil {
		return fmt.Errorf("want a JSON object: %w", err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("want a key, got %v", tok)
		}
		if err := fn(key); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return expectDelim(dec, '}')
}

// walkArray reads a JSON array from dec, calling fn with the index of each
// element with the decoder before it; fn must consume the element.
func walkArray(dec *json.Decoder, fn func(i int) error) error {
	if err := expectDelim(dec, '['); err != nil {
		return fmt.Errorf("want an array: %w", err)
	}
	for i := 0; dec.More(); i++ {
		if err := fn(i); err != nil {
			return err
		}
	}
	return expectDelim(dec, ']')
}

func skipValue(dec *json.Decoder) error {
	var skip json.RawMessage
	return dec.Decode(&skip)
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return fmt.Errorf("want %q, got %v", d, tok)
	}
	return nil
}
