// Package attack loads MITRE ATT&CK Enterprise from its STIX 2.0 bundle
// (enterprise-attack.json, or a subset of it with the same object shapes)
// and answers what a technique or tactic ID stands for.
//
// Techniques and sub-techniques come from attack-pattern objects, their
// IDs from the external reference whose source_name is mitre-attack, their
// tactics from kill_chain_phases; tactics come from x-mitre-tactic objects,
// in the order of the x-mitre-matrix when the bundle has one. Revoked and
// deprecated objects are not loaded but are counted and remembered by ID,
// so that Check can tell a retired technique from an unknown one. Other
// objects (groups, software, relationships, ...) are skipped.
//
// The bundle is decoded one object at a time, so the full 40 MB file is
// never held as a whole.
package attack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// DefaultFiles are the bundle names Load looks for in a directory, in
// order.
var DefaultFiles = []string{"enterprise-attack.json", "enterprise-attack-techniques.json"}

// MaxBundleSize bounds the bundle Load and Parse read (the full Enterprise
// bundle is some 45 MB).
var MaxBundleSize int64 = 512 << 20

// Technique is an ATT&CK technique or sub-technique.
type Technique struct {
	ID   string `json:"id"` // T1110, T1110.001
	Name string `json:"name"`
	// Parent is the ID of the technique a sub-technique belongs to, or "".
	Parent string `json:"parent,omitempty"`
	// Tactics are the short names of the tactics (kill chain phases) it
	// serves, such as credential-access.
	Tactics   []string `json:"tactics"`
	Platforms []string `json:"platforms,omitempty"`
	URL       string   `json:"url,omitempty"`
	STIXID    string   `json:"stix_id"`
}

// IsSubtechnique reports whether t is a sub-technique.
func (t *Technique) IsSubtechnique() bool { return t.Parent != "" }

// Tactic is an ATT&CK tactic.
type Tactic struct {
	ID        string `json:"id"`         // TA0006
	Name      string `json:"name"`       // Credential Access
	ShortName string `json:"short_name"` // credential-access
	STIXID    string `json:"stix_id"`
}

// Counts says what a bundle held.
type Counts struct {
	Objects       int `json:"objects"`
	Techniques    int `json:"techniques"`    // loaded, not sub-techniques
	Subtechniques int `json:"subtechniques"` // loaded
	Tactics       int `json:"tactics"`       // loaded
	Revoked       int `json:"revoked"`       // attack-patterns and tactics not loaded
	Deprecated    int `json:"deprecated"`    // not revoked, but deprecated: not loaded
	NoID          int `json:"no_id"`         // attack-patterns with no mitre-attack ID
	Duplicates    int `json:"duplicates"`    // IDs met twice: the later modified kept
}

// Catalog is a loaded ATT&CK bundle.
type Catalog struct {
	Name   string // the file it came from
	Counts Counts

	techniques map[string]*Technique
	modified   map[string]string // technique ID: its modified time, for duplicates
	tactics    map[string]*Tactic
	byShort    map[string]*Tactic
	tacticSTIX map[string]*Tactic
	order      []string // tactic STIX IDs of the matrix
	retired    map[string]string
	subs       map[string][]string
}

// Errors of Check.
var (
	ErrUnknown    = errors.New("unknown ATT&CK technique")
	ErrRevoked    = errors.New("revoked ATT&CK technique")
	ErrDeprecated = errors.New("deprecated ATT&CK technique")
	ErrBadID      = errors.New("not an ATT&CK technique ID")
)

var (
	techniqueID = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)
	tacticID    = regexp.MustCompile(`^TA\d{4}$`)
)

// NormalizeID returns a technique ID in canonical form (T1059.001), or
// ErrBadID.
func NormalizeID(id string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(id))
	if !techniqueID.MatchString(c) {
		return "", fmt.Errorf("%w: %q (want T and four digits, and .NNN for a sub-technique)", ErrBadID, id)
	}
	return c, nil
}

// Load reads the bundle at path: a file, or a directory holding one of
// DefaultFiles.
func Load(path string) (*Catalog, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("attack: %w", err)
	}
	if st.IsDir() {
		dir := path
		path = ""
		for _, n := range DefaultFiles {
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
				path = filepath.Join(dir, n)
				break
			}
		}
		if path == "" {
			return nil, fmt.Errorf("attack: %s holds none of %s", dir, strings.Join(DefaultFiles, ", "))
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("attack: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// stixObject is what the catalog reads of a STIX object.
type stixObject struct {
	Type               string   `json:"type"`
	ID                 string   `json:"id"`
	Name               string   `json:"name"`
	Modified           string   `json:"modified"`
	Revoked            bool     `json:"revoked"`
	Deprecated         bool     `json:"x_mitre_deprecated"`
	IsSubtechnique     bool     `json:"x_mitre_is_subtechnique"`
	ShortName          string   `json:"x_mitre_shortname"`
	Platforms          []string `json:"x_mitre_platforms"`
	ExternalReferences []struct {
		SourceName string `json:"source_name"`
		ExternalID string `json:"external_id"`
		URL        string `json:"url"`
	} `json:"external_references"`
	KillChainPhases []struct {
		KillChainName string `json:"kill_chain_name"`
		PhaseName     string `json:"phase_name"`
	} `json:"kill_chain_phases"`
	TacticRefs []string `json:"tactic_refs"`
}

// Parse reads a STIX 2.0 or 2.1 bundle from r; name names it in errors.
func Parse(r io.Reader, name string) (*Catalog, error) {
	lr := &io.LimitedReader{R: r, N: MaxBundleSize + 1}
	dec := json.NewDecoder(lr)
	c := &Catalog{
		Name:       name,
		techniques: make(map[string]*Technique),
		modified:   make(map[string]string),
		tactics:    make(map[string]*Tactic),
		byShort:    make(map[string]*Tactic),
		tacticSTIX: make(map[string]*Tactic),
		retired:    make(map[string]string),
		subs:       make(map[string][]string),
	}
	fail := func(err error) (*Catalog, error) {
		if lr.N <= 0 {
			return nil, fmt.Errorf("attack: %s: larger than %d bytes", name, MaxBundleSize)
		}
		return nil, fmt.Errorf("attack: %s: at byte %d: %w", name, dec.InputOffset(), err)
	}
	if err := expectDelim(dec, '{'); err != nil {
		return fail(fmt.Errorf("want a STIX bundle (a JSON object): %w", err))
	}
	sawObjects := false
	bundleType := ""
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		key, _ := tok.(string)
		switch key {
		case "objects":
			sawObjects = true
			if err := expectDelim(dec, '['); err != nil {
				return fail(fmt.Errorf("objects: want an array: %w", err))
			}
			for dec.More() {
				var o stixObject
				if err := dec.Decode(&o); err != nil {
					return fail(fmt.Errorf("object %d: %w", c.Counts.Objects+1, err))
				}
				c.Counts.Objects++
				if err := c.add(&o); err != nil {
					return fail(fmt.Errorf("object %d (%s): %w", c.Counts.Objects, o.ID, err))
				}
			}
			if err := expectDelim(dec, ']'); err != nil {
				return fail(err)
			}
		case "type":
			if err := dec.Decode(&bundleType); err != nil {
				return fail(fmt.Errorf("type: %w", err))
			}
			if bundleType != "bundle" {
				return fail(fmt.Errorf("type %q, want bundle", bundleType))
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fail(err)
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return fail(err)
	}
	if !sawObjects {
		return fail(errors.New("bundle has no objects"))
	}
	if lr.N <= 0 {
		return fail(errors.New("too large"))
	}
	c.finish()
	return c, nil
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

// attackRef returns the object's mitre-attack external ID and URL.
func attackRef(o *stixObject) (id, url string) {
	for _, r := range o.ExternalReferences {
		if r.SourceName == "mitre-attack" && r.ExternalID != "" {
			return r.ExternalID, r.URL
		}
	}
	return "", ""
}

// add takes one object into the catalog.
func (c *Catalog) add(o *stixObject) error {
	switch o.Type {
	case "attack-pattern":
		id, url := attackRef(o)
		if id == "" {
			c.Counts.NoID++
			return nil
		}
		if !techniqueID.MatchString(id) {
			return fmt.Errorf("attack-pattern ID %q is not a technique ID", id)
		}
		if o.Revoked || o.Deprecated {
			c.retire(o, id)
			return nil
		}
		if prev, dup := c.modified[id]; dup {
			c.Counts.Duplicates++
			if prev >= o.Modified {
				return nil
			}
		}
		// The ID decides what is a sub-technique (T1110.001), whatever
		// x_mitre_is_subtechnique says.
		t := &Technique{ID: id, Name: o.Name, URL: url, STIXID: o.ID, Platforms: o.Platforms, Tactics: []string{}}
		if i := strings.IndexByte(id, '.'); i >= 0 {
			t.Parent = id[:i]
		}
		for _, p := range o.KillChainPhases {
			if p.KillChainName == "mitre-attack" && !slices.Contains(t.Tactics, p.PhaseName) {
				t.Tactics = append(t.Tactics, p.PhaseName)
			}
		}
		c.techniques[id] = t
		c.modified[id] = o.Modified
	case "x-mitre-tactic":
		id, _ := attackRef(o)
		if !tacticID.MatchString(id) {
			return fmt.Errorf("tactic ID %q is not TA and four digits", id)
		}
		if o.ShortName == "" {
			return fmt.Errorf("tactic %s has no x_mitre_shortname", id)
		}
		if o.Revoked || o.Deprecated {
			c.retire(o, id)
			return nil
		}
		t := &Tactic{ID: id, Name: o.Name, ShortName: o.ShortName, STIXID: o.ID}
		c.tactics[id] = t
		c.byShort[t.ShortName] = t
		c.tacticSTIX[t.STIXID] = t
	case "x-mitre-matrix":
		if !o.Revoked && !o.Deprecated && len(c.order) == 0 {
			c.order = o.TacticRefs
		}
	}
	return nil
}

// retire counts a revoked or deprecated object and remembers its ID.
func (c *Catalog) retire(o *stixObject, id string) {
	if o.Revoked {
		c.Counts.Revoked++
		c.retired[id] = "revoked"
	} else {
		c.Counts.Deprecated++
		if c.retired[id] == "" {
			c.retired[id] = "deprecated"
		}
	}
}

// finish counts what was loaded and indexes sub-techniques.
func (c *Catalog) finish() {
	for id, t := range c.techniques {
		delete(c.retired, id) // an active object under a retired one's ID wins
		if t.Parent != "" {
			c.Counts.Subtechniques++
			c.subs[t.Parent] = append(c.subs[t.Parent], id)
		} else {
			c.Counts.Techniques++
		}
	}
	for _, s := range c.subs {
		slices.Sort(s)
	}
	c.Counts.Tactics = len(c.tactics)
	c.modified = nil
}

// Technique returns the active technique or sub-technique with the given
// ID (any case).
func (c *Catalog) Technique(id string) (*Technique, bool) {
	t, ok := c.techniques[strings.ToUpper(strings.TrimSpace(id))]
	return t, ok
}

// Check says whether id names an active technique: nil if it does, else
// an error wrapping ErrBadID, ErrRevoked, ErrDeprecated or ErrUnknown.
func (c *Catalog) Check(id string) error {
	n, err := NormalizeID(id)
	if err != nil {
		return err
	}
	if _, ok := c.techniques[n]; ok {
		return nil
	}
	switch c.retired[n] {
	case "revoked":
		return fmt.Errorf("%w: %s", ErrRevoked, n)
	case "deprecated":
		return fmt.Errorf("%w: %s", ErrDeprecated, n)
	}
	return fmt.Errorf("%w: %s is not in %s", ErrUnknown, n, c.Name)
}

// Subtechniques returns the IDs of the active sub-techniques of a
// technique, in order.
func (c *Catalog) Subtechniques(id string) []string {
	return slices.Clone(c.subs[strings.ToUpper(id)])
}

// Techniques returns every active technique and sub-technique, by ID.
func (c *Catalog) Techniques() []*Technique {
	out := make([]*Technique, 0, len(c.techniques))
	for _, t := range c.techniques {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *Technique) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Tactic returns the tactic with the given ID (TA0006) or short name
// (credential-access).
func (c *Catalog) Tactic(idOrShortName string) (*Tactic, bool) {
	if t, ok := c.tactics[strings.ToUpper(idOrShortName)]; ok {
		return t, true
	}
	t, ok := c.byShort[strings.ToLower(idOrShortName)]
	return t, ok
}

// Tactics returns the tactics in the order of the matrix, those the
// matrix does not name after them by ID.
func (c *Catalog) Tactics() []*Tactic {
	out := make([]*Tactic, 0, len(c.tactics))
	seen := make(map[string]bool)
	for _, ref := range c.order {
		if t, ok := c.tacticSTIX[ref]; ok && !seen[t.ID] {
			out = append(out, t)
			seen[t.ID] = true
		}
	}
	var rest []*Tactic
	for id, t := range c.tactics {
		if !seen[id] {
			rest = append(rest, t)
		}
	}
	slices.SortFunc(rest, func(a, b *Tactic) int { return strings.Compare(a.ID, b.ID) })
	return append(out, rest...)
}
