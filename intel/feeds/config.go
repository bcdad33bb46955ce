package feeds

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/meshward/meshward/internal/confcheck"
)

// Formats a feed may be in.
const (
	FormatPlain = "plain"
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
	FormatMISP  = "misp"
	FormatSTIX  = "stix"
	FormatTAXII = "taxii"
)

// Formats lists the formats, in the order they are documented.
var Formats = []string{FormatPlain, FormatCSV, FormatJSONL, FormatMISP, FormatSTIX, FormatTAXII}

// Defaults and bounds of a feed's configuration.
const (
	DefaultInterval   = time.Hour
	DefaultConfidence = 50
	DefaultTTL        = 7 * 24 * time.Hour
	DefaultMaxEntries = 2_000_000
	MinInterval       = time.Second
	MaxTTL            = 365 * 24 * time.Hour
	MaxFeeds          = 64
)

// Config is one feed: where it is, in which format, how often to fetch it,
// and what its reports say.
type Config struct {
	// Name identifies the feed: the Source of its reports, its metrics'
	// feed label, its state file's name. 1 to 64 of a-z, 0-9, '.', '_', '-'.
	Name string `yaml:"name" json:"name"`
	// URL (https only) or Path (a local file; a directory for misp): one
	// of them.
	URL  string `yaml:"url" json:"url,omitempty"`
	Path string `yaml:"path" json:"path,omitempty"`
	// Format is plain, csv, jsonl, misp, stix (a bundle) or taxii (a
	// TAXII 2.1 collection's URL, polled in full).
	Format string       `yaml:"format" json:"format"`
	CSV    CSVOptions   `yaml:"csv" json:"csv,omitzero"`
	JSONL  JSONLOptions `yaml:"jsonl" json:"jsonl,omitzero"`
	// Interval between fetches (DefaultInterval; at least MinInterval).
	Interval time.Duration `yaml:"interval" json:"-"`
	// Confidence (0..100) of reports whose entry gives none.
	Confidence int `yaml:"confidence" json:"confidence"`
	// TTL is how long each report stays valid (DefaultTTL); an entry is
	// published again once half its TTL has passed while the feed still
	// lists it.
	TTL time.Duration `yaml:"ttl" json:"-"`
	// TLP marks reports whose entry has no marking of its own.
	TLP    string   `yaml:"tlp" json:"tlp,omitempty"`
	Labels []string `yaml:"labels" json:"labels,omitempty"`
	// Enabled is true unless set false.
	Enabled *bool `yaml:"enabled" json:"enabled,omitempty"`
	// Strict makes an invalid value fail the whole fetch instead of being
	// skipped and counted.
	Strict bool `yaml:"strict" json:"strict,omitempty"`
	// MaxBytes bounds a fetch (DefaultMaxBytes); Timeout bounds it in
	// time (DefaultFetchTimeout).
	MaxBytes int64         `yaml:"max_bytes" json:"max_bytes,omitempty"`
	Timeout  time.Duration `yaml:"timeout" json:"-"`
	// TokenFile holds the token a taxii feed presents: as a bearer token,
	// or as the Basic password of Username when that is set.
	TokenFile string `yaml:"token_file" json:"token_file,omitempty"`
	Username  string `yaml:"username" json:"username,omitempty"`
	// MaxEntries bounds the entries kept from one fetch
	// (DefaultMaxEntries); the rest are skipped as "over_limit".
	MaxEntries int `yaml:"max_entries" json:"max_entries,omitempty"`
}

// IsEnabled reports whether the feed is enabled.
func (c Config) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// Source is the URL or the path.
func (c Config) Source() string {
	if c.URL != "" {
		return c.URL
	}
	return c.Path
}

// WithDefaults fills the zero fields with their defaults.
func (c Config) WithDefaults() Config {
	if c.Format == "" {
		c.Format = FormatPlain
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultFetchTimeout
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	return c
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// supported reports whether a format can be read by this build.
var supported = map[string]bool{FormatPlain: true, FormatCSV: true, FormatJSONL: true, FormatMISP: true, FormatSTIX: true, FormatTAXII: true}

// Validate checks the feed (defaults applied first); every problem names
// its field.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var p confcheck.Problems
	if !nameRE.MatchString(c.Name) {
		p.Add("name", c.Name, "must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
	}
	switch {
	case c.URL == "" && c.Path == "":
		p.Add("url", "", "one of url or path is required")
	case c.URL != "" && c.Path != "":
		p.Add("path", c.Path, "give url or path, not both")
	case c.URL != "":
		if err := CheckURL(c.URL); err != nil {
			p.Add("url", c.URL, err.Error())
		}
	}
	known := false
	for _, f := range Formats {
		known = known || f == c.Format
	}
	switch {
	case !known:
		p.Add("format", c.Format, "allowed values: plain, csv, jsonl, misp, stix, taxii")
	case !supported[c.Format]:
		p.Add("format", c.Format, "not supported yet")
	}
	if c.Format == FormatTAXII && c.URL == "" {
		p.Add("url", c.Path, "a taxii feed is the https:// URL of a collection")
	}
	if c.Format != FormatTAXII && (c.TokenFile != "" || c.Username != "") {
		p.Add("token_file", c.TokenFile, "only a taxii feed takes credentials")
	}
	if c.Format == FormatCSV {
		if err := c.CSV.Validate(); err != nil {
			p.Add("csv", c.CSV, err.Error())
		}
	}
	if c.Format == FormatJSONL {
		if err := c.JSONL.Validate(); err != nil {
			p.Add("jsonl", c.JSONL, err.Error())
		}
	}
	if c.Interval < MinInterval {
		p.Add("interval", c.Interval, fmt.Sprintf("must be at least %s", MinInterval))
	}
	if c.Confidence < 0 || c.Confidence > 100 {
		p.Add("confidence", c.Confidence, "must be 0 to 100")
	}
	if c.TTL < 0 || c.TTL > MaxTTL {
		p.Add("ttl", c.TTL, fmt.Sprintf("must be positive and at most %s", MaxTTL))
	}
	if c.TLP != "" {
		if _, err := ParseTLP(c.TLP); err != nil {
			p.Add("tlp", c.TLP, "allowed values: clear, green, amber, amber+strict, red")
		}
	}
	if len(c.Labels) > 8 {
		p.Add("labels", len(c.Labels), "at most 8")
	}
	for i, l := range c.Labels {
		if l == "" || len(l) > 64 || !validUTF8(l) || hasControl(l) {
			p.Add(fmt.Sprintf("labels[%d]", i), l, "must be 1 to 64 bytes of text")
		}
	}
	if c.MaxBytes < 0 {
		p.Add("max_bytes", c.MaxBytes, "must be positive")
	}
	if c.Timeout < 0 {
		p.Add("timeout", c.Timeout, "must be positive")
	}
	if c.MaxEntries < 0 || c.MaxEntries > 10*DefaultMaxEntries {
		p.Add("max_entries", c.MaxEntries, fmt.Sprintf("must be 1 to %d", 10*DefaultMaxEntries))
	}
	return p.Err()
}

// ValidateList checks a list of feeds: each one, at most MaxFeeds, names
// unique.
func ValidateList(list []Config) error {
	var p confcheck.Problems
	if len(list) > MaxFeeds {
		p.Add("", len(list), fmt.Sprintf("at most %d feeds", MaxFeeds))
	}
	seen := map[string]int{}
	for i, c := range list {
		p.Join(fmt.Sprintf("[%d]", i), c.Validate())
		if j, dup := seen[c.Name]; dup {
			p.Add(fmt.Sprintf("[%d].name", i), c.Name, fmt.Sprintf("repeats feeds[%d]", j))
		}
		seen[c.Name] = i
	}
	return p.Err()
}

// MarshalJSON writes durations as text.
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config
	out := struct {
		plain
		Interval string `json:"interval,omitempty"`
		TTL      string `json:"ttl,omitempty"`
		Timeout  string `json:"timeout,omitempty"`
	}{plain: plain(c)}
	if c.Interval != 0 {
		out.Interval = c.Interval.String()
	}
	if c.TTL != 0 {
		out.TTL = c.TTL.String()
	}
	if c.Timeout != 0 {
		out.Timeout = c.Timeout.String()
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads durations as text.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	var in struct {
		plain
		Interval string `json:"interval"`
		TTL      string `json:"ttl"`
		Timeout  string `json:"timeout"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*c = Config(in.plain)
	for _, d := range []struct {
		name string
		s    string
		to   *time.Duration
	}{{"interval", in.Interval, &c.Interval}, {"ttl", in.TTL, &c.TTL}, {"timeout", in.Timeout, &c.Timeout}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration such as 1h or 30m", d.name, d.s)
		}
		*d.to = v
	}
	return nil
}
