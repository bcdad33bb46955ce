package kev

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"encoding/json"

	gocvss30 "github.com/pandatix/go-cvss/30"
	gocvss31 "github.com/pandatix/go-cvss/31"
	gocvss40 "github.com/pandatix/go-cvss/40"
)

// Score is one CVSS metric of a CVE, scored from its vector.
type Score struct {
	Version  string  `json:"version"` // 3.0, 3.1 or 4.0
	Vector   string  `json:"vector"`
	Base     float64 `json:"base"`     // computed from Vector
	Severity string  `json:"severity"` // NONE, LOW, MEDIUM, HIGH, CRITICAL, from Base
	Source   string  `json:"source"`
	Primary  bool    `json:"primary"`
	// Stated is the base score the record states, which may differ from
	// Base when the record is inconsistent.
	Stated float64 `json:"stated"`
}

// CVE is what the mesh keeps of a CVE record.
type CVE struct {
	ID           string    `json:"id"`
	Published    time.Time `json:"published"`
	LastModified time.Time `json:"last_modified"`
	Status       string    `json:"status,omitempty"`
	Description  string    `json:"description,omitempty"` // the English one
	CWEs         []string  `json:"cwes,omitempty"`
	Scores       []Score   `json:"scores,omitempty"`
	// CISAExploitAdd is the date NVD says CISA added it to KEV, or zero.
	CISAExploitAdd time.Time `json:"cisa_exploit_add,omitzero"`
}

// Best returns the score to rank the CVE by: of the newest CVSS version
// scored, the primary one (NVD's own) if there is one, else the highest.
func (c *CVE) Best() (Score, bool) {
	var best Score
	found := false
	for _, s := range c.Scores {
		switch {
		case !found, s.Version > best.Version,
			s.Version == best.Version && s.Primary && !best.Primary,
			s.Version == best.Version && s.Primary == best.Primary && s.Base > best.Base:
			best, found = s, true
		}
	}
	return best, found
}

// NVD is a set of CVE records read from NVD API 2.0 JSON files.
type NVD struct {
	cves map[string]*CVE
	// Problems are the metrics that were not loaded (a vector that does
	// not parse, a version not scored), each naming file and CVE; at most
	// MaxProblems are kept.
	Problems []string
	// Dropped counts the problems past MaxProblems.
	Dropped int
}

// MaxProblems bounds NVD.Problems.
const MaxProblems = 100

// NewNVD returns an empty set.
func NewNVD() *NVD { return &NVD{cves: make(map[string]*CVE)} }

// LoadFile adds the CVEs of an NVD API 2.0 response or feed file.
func (n *NVD) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("nvd: %w", err)
	}
	defer f.Close()
	return n.Parse(f, path)
}

// LoadDir adds the CVEs of every .json file in dir (NVD API pages saved
// one a file, or yearly feeds), in name order. It stops at the first file
// that does not load.
func (n *NVD) LoadDir(dir string) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return fmt.Errorf("nvd: %w", err)
	}
	if len(paths) == 0 {
		return fmt.Errorf("nvd: no .json files in %s", dir)
	}
	for _, p := range paths {
		if err := n.LoadFile(p); err != nil {
			return err
		}
	}
	return nil
}

// nvdCVE is a CVE record as NVD API 2.0 spells it.
type nvdCVE struct {
	ID             string `json:"id"`
	Published      string `json:"published"`
	LastModified   string `json:"lastModified"`
	VulnStatus     string `json:"vulnStatus"`
	CISAExploitAdd string `json:"cisaExploitAdd"`
	Descriptions   []struct {
		Lang  string `json:"lang"`
		Value string `json:"value"`
	} `json:"descriptions"`
	Weaknesses []struct {
		Description []struct {
			Value string `json:"value"`
		} `json:"description"`
	} `json:"weaknesses"`
	Metrics map[string][]struct {
		Source   string `json:"source"`
		Type     string `json:"type"`
		CVSSData struct {
			Version      string  `json:"version"`
			VectorString string  `json:"vectorString"`
			BaseScore    float64 `json:"baseScore"`
		} `json:"cvssData"`
	} `json:"metrics"`
}

// scoredMetrics are the metric lists of an NVD record that are scored;
// cvssMetricV2 is not.
var scoredMetrics = []string{"cvssMetricV40", "cvssMetricV31", "cvssMetricV30"}

// Parse adds the CVEs of an NVD API 2.0 document read from r; name names
// it in errors. A CVE met again replaces the earlier record when its
// lastModified is not older.
func (n *NVD) Parse(r io.Reader, name string) error {
	lr := &io.LimitedReader{R: r, N: MaxFileSize + 1}
	dec := json.NewDecoder(lr)
	format := ""
	sawVulns := false
	err := walkObject(dec, func(key string) error {
		switch key {
		case "format":
			return dec.Decode(&format)
		case "vulnerabilities":
			sawVulns = true
			return walkArray(dec, func(i int) error {
				var item struct {
					CVE nvdCVE `json:"cve"`
				}
				if err := dec.Decode(&item); err != nil {
					return fmt.Errorf("vulnerability %d: %w", i+1, err)
				}
				if err := n.add(&item.CVE, name); err != nil {
					return fmt.Errorf("vulnerability %d (%s): %w", i+1, item.CVE.ID, err)
				}
				return nil
			})
		}
		return skipValue(dec)
	})
	if err == nil && format != "" && format != "NVD_CVE" {
		err = fmt.Errorf("format %q, want NVD_CVE", format)
	}
	if err == nil && !sawVulns {
		err = errors.New("no vulnerabilities: not an NVD API 2.0 CVE document")
	}
	if err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("nvd: %s: larger than %d bytes", name, MaxFileSize)
		}
		return fmt.Errorf("nvd: %s: at byte %d: %w", name, dec.InputOffset(), err)
	}
	return nil
}

// nvdTime parses NVD's timestamps, which have no zone (they are UTC).
func nvdTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q is not an NVD timestamp", s)
}

func (n *NVD) add(r *nvdCVE, name string) error {
	if !cveID.MatchString(r.ID) {
		return fmt.Errorf("id %q is not a CVE ID", r.ID)
	}
	c := &CVE{ID: r.ID, Status: r.VulnStatus}
	var err error
	if c.Published, err = nvdTime(r.Published); err != nil {
		return fmt.Errorf("published: %w", err)
	}
	if r.LastModified != "" {
		if c.LastModified, err = nvdTime(r.LastModified); err != nil {
			return fmt.Errorf("lastModified: %w", err)
		}
	}
	if r.CISAExploitAdd != "" {
		if c.CISAExploitAdd, err = time.Parse(time.DateOnly, r.CISAExploitAdd); err != nil {
			return fmt.Errorf("cisaExploitAdd: %w", err)
		}
	}
	for _, d := range r.Descriptions {
		if d.Lang == "en" {
			c.Description = d.Value
			break
		}
	}
	for _, w := range r.Weaknesses {
		for _, d := range w.Description {
			if strings.HasPrefix(d.Value, "CWE-") && !slices.Contains(c.CWEs, d.Value) {
				c.CWEs = append(c.CWEs, d.Value)
			}
		}
	}
	for _, key := range scoredMetrics {
		for i, m := range r.Metrics[key] {
			s, err := ScoreVector(m.CVSSData.VectorString)
			if err != nil {
				n.problem(fmt.Sprintf("%s: %s: %s[%d]: %v", name, r.ID, key, i, err))
				continue
			}
			if m.CVSSData.Version != "" && m.CVSSData.Version != s.Version {
				n.problem(fmt.Sprintf("%s: %s: %s[%d]: version %q but vector %q", name, r.ID, key, i, m.CVSSData.Version, s.Vector))
				continue
			}
			s.Source, s.Primary, s.Stated = m.Source, m.Type == "Primary", m.CVSSData.BaseScore
			c.Scores = append(c.Scores, s)
		}
	}
	if old, ok := n.cves[c.ID]; ok && old.LastModified.After(c.LastModified) {
		return nil
	}
	n.cves[c.ID] = c
	return nil
}

func (n *NVD) problem(p string) {
	if len(n.Problems) >= MaxProblems {
		n.Dropped++
		return
	}
	n.Problems = append(n.Problems, p)
}

// Lookup returns the record of a CVE ID.
func (n *NVD) Lookup(id string) (*CVE, bool) {
	c, ok := n.cves[id]
	return c, ok
}

// Len is the number of CVE records.
func (n *NVD) Len() int { return len(n.cves) }

// ScoreVector parses a CVSS 3.0, 3.1 or 4.0 vector and computes its base
// score (for 4.0, the CVSS-B, -BT, -BE or -BTE score its metrics give).
func ScoreVector(vector string) (Score, error) {
	s := Score{Vector: vector}
	switch {
	case strings.HasPrefix(vector, "CVSS:3.0/"):
		v, err := gocvss30.ParseVector(vector)
		if err != nil {
			return s, fmt.Errorf("CVSS 3.0 vector %q: %w", vector, err)
		}
		s.Version, s.Base = "3.0", v.BaseScore()
	case strings.HasPrefix(vector, "CVSS:3.1/"):
		v, err := gocvss31.ParseVector(vector)
		if err != nil {
			return s, fmt.Errorf("CVSS 3.1 vector %q: %w", vector, err)
		}
		s.Version, s.Base = "3.1", v.BaseScore()
	case strings.HasPrefix(vector, "CVSS:4.0/"):
		v, err := gocvss40.ParseVector(vector)
		if err != nil {
			return s, fmt.Errorf("CVSS 4.0 vector %q: %w", vector, err)
		}
		s.Version, s.Base = "4.0", v.Score()
	default:
		return s, fmt.Errorf("vector %q: want CVSS:3.0/, CVSS:3.1/ or CVSS:4.0/", vector)
	}
	if math.IsNaN(s.Base) || s.Base < 0 || s.Base > 10 {
		return s, fmt.Errorf("vector %q scores %v", vector, s.Base)
	}
	s.Severity = Severity(s.Base)
	return s, nil
}

// Severity is the qualitative rating of a CVSS 3.x or 4.0 score.
func Severity(score float64) string {
	switch {
	case score == 0:
		return "NONE"
	case score < 4:
		return "LOW"
	case score < 7:
		return "MEDIUM"
	case score < 9:
		return "HIGH"
	}
	return "CRITICAL"
}
