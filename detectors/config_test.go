package detectors

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/internal/confcheck"
)

func TestDefaultConfigIsValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// Syslog's defaults must be valid once it is turned on.
	c.Syslog.Enabled, c.Journald.Enabled = true, true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidateNamesEveryField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*Config)
		fields []string
	}{
		{"disabled is not checked", func(c *Config) { c.Enabled, c.MaxSources, c.Paths = false, 0, nil }, nil},
		{"no source", func(c *Config) { c.Paths = nil }, []string{"paths"}},
		{"syslog alone", func(c *Config) { c.Paths, c.Syslog.Enabled = nil, true }, nil},
		{"journald alone", func(c *Config) { c.Paths, c.Journald.Enabled = nil, true }, nil},
		{"bad glob", func(c *Config) { c.Paths = []string{"/var/log/auth.log", "/var/log/["} }, []string{"paths[1]"}},
		{"empty path", func(c *Config) { c.Paths = []string{""} }, []string{"paths[0]"}},
		{"poll interval", func(c *Config) { c.PollInterval = 0 }, []string{"poll_interval"}},
		{"max sources", func(c *Config) { c.MaxSources = 0 }, []string{"max_sources"}},
		{"syslog without address", func(c *Config) { c.Syslog.Enabled, c.Syslog.UDP, c.Syslog.TCP = true, "", "" }, []string{"syslog.udp"}},
		{"syslog tcp only", func(c *Config) { c.Syslog.Enabled, c.Syslog.UDP = true, "" }, nil},
		{"syslog bad addresses", func(c *Config) { c.Syslog.Enabled, c.Syslog.UDP, c.Syslog.TCP = true, "localhost", "5514" }, []string{"syslog.udp", "syslog.tcp"}},
		{"syslog limits", func(c *Config) {
			c.Syslog.Enabled, c.Syslog.MaxMessageBytes, c.Syslog.MaxConns, c.Syslog.IdleTimeout = true, 479, 0, -time.Second
		}, []string{"syslog.max_message_bytes", "syslog.max_conns", "syslog.idle_timeout"}},
		{"syslog off is not checked", func(c *Config) { c.Syslog.MaxConns = 0 }, nil},
		{"journald match", func(c *Config) { c.Journald.Enabled, c.Journald.Matches = true, []string{"+", "--output=cat"} }, []string{"journald.matches[1]"}},
		{"journald off is not checked", func(c *Config) { c.Journald.Matches = []string{"-f"} }, nil},
		{"resolve limits", func(c *Config) {
			c.ResolveHosts = ResolveConfig{Enabled: true, Timeout: -time.Second, CacheSize: -1, MaxLookups: 100_001}
		}, []string{"resolve_hosts.timeout", "resolve_hosts.cache_size", "resolve_hosts.max_lookups_per_minute"}},
		{"resolve defaults", func(c *Config) { c.ResolveHosts.Enabled = true }, nil},
		{"resolve off is not checked", func(c *Config) { c.ResolveHosts.Timeout = time.Hour }, nil},
		{"all at once", func(c *Config) { c.Paths, c.PollInterval, c.MaxSources = []string{""}, 0, 0 }, []string{"paths[0]", "poll_interval", "max_sources"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			var got []string
			for _, fe := range confcheck.Fields(err) {
				got = append(got, fe.Field)
			}
			if !slices.Equal(got, tc.fields) {
				t.Fatalf("Validate() = %v\nfields %q, want %q", err, got, tc.fields)
			}
			if err != nil && len(confcheck.Fields(err)) != len(unwrapAll(err)) {
				t.Errorf("an error is not a *confcheck.FieldError: %v", err)
			}
		})
	}
}

// unwrapAll flattens errors.Join trees.
func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}

func TestConfigFieldsUnderTheSection(t *testing.T) {
	c := DefaultConfig()
	c.Syslog.Enabled, c.Syslog.MaxConns = true, 0
	var fe *confcheck.FieldError
	if err := confcheck.Under("detectors", c.Validate()); !errors.As(err, &fe) || fe.Field != "detectors.syslog.max_conns" || fe.Value != 0 {
		t.Fatalf("got %v", err)
	}
}

// Resolution is off unless enabled, and then carries the configured
// bounds to the engine.
func TestResolveConfigOptions(t *testing.T) {
	if o := (ResolveConfig{Timeout: time.Second}).Options(); o != nil {
		t.Fatalf("disabled resolution gave options %+v", o)
	}
	o := ResolveConfig{Enabled: true, Timeout: time.Second, CacheSize: 10, MaxLookups: 5}.Options()
	if o == nil || o.Timeout != time.Second || o.CacheSize != 10 || o.MaxLookups != 5 {
		t.Fatalf("options %+v", o)
	}
	if DefaultConfig().ResolveHosts.Enabled {
		t.Fatal("host resolution is on by default")
	}
}
