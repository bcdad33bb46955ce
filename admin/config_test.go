package admin_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/internal/confcheck"
)

func TestConfigDefaultsAreValid(t *testing.T) {
	c := admin.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c.AuditRetention != 90*24*time.Hour || c.Socket != "" || c.Listen != "" {
		t.Fatalf("defaults %+v", c)
	}
}

func TestConfigValidateNamesEveryField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*admin.Config)
		fields []string
	}{
		{"listen not host:port", func(c *admin.Config) { c.Listen, c.TLSCert, c.TLSKey = "nowhere", "c.pem", "k.pem" }, []string{"listen"}},
		{"listen without TLS", func(c *admin.Config) { c.Listen, c.TLSCert = "127.0.0.1:7947", "c.pem" }, []string{"tls_cert"}},
		{"TLS without listen", func(c *admin.Config) { c.TLSCert = "c.pem" }, nil},
		{"no retention", func(c *admin.Config) { c.AuditRetention = 0 }, []string{"audit_retention"}},
		{"dashboard on a public address", func(c *admin.Config) { c.DashboardHTTP = "0.0.0.0:7948" }, []string{"dashboard_http"}},
		{"dashboard by host name", func(c *admin.Config) { c.DashboardHTTP = "localhost:7948" }, []string{"dashboard_http"}},
		{"dashboard not host:port", func(c *admin.Config) { c.DashboardHTTP = "127.0.0.1" }, []string{"dashboard_http"}},
		{"dashboard on IPv6 loopback", func(c *admin.Config) { c.DashboardHTTP = "[::1]:7948" }, nil},
		{"sessions without age", func(c *admin.Config) { c.SessionMaxAge = 0 }, []string{"session_max_age", "session_idle"}},
		{"idle over max age", func(c *admin.Config) { c.SessionIdle = 9 * time.Hour }, []string{"session_idle"}},
		{"all at once", func(c *admin.Config) { c.Listen, c.AuditRetention = "x", -time.Hour }, []string{"listen", "tls_cert", "audit_retention"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := admin.DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			var got []string
			for _, fe := range confcheck.Fields(err) {
				got = append(got, fe.Field)
			}
			if !slices.Equal(got, tc.fields) {
				t.Fatalf("fields %v (%v), want %v", got, err, tc.fields)
			}
			// The node names them under its section.
			if len(tc.fields) > 0 && !strings.Contains(confcheck.Under("admin", err).Error(), "admin."+tc.fields[0]+": ") {
				t.Errorf("under admin: %v", confcheck.Under("admin", err))
			}
		})
	}
}

func TestConfigYAMLKeys(t *testing.T) {
	src := []byte("socket: /run/mw.sock\nlisten: 127.0.0.1:7947\ntls_cert: c.pem\ntls_key: k.pem\naudit_retention: 720h\n" +
		"dashboard_http: 127.0.0.1:7948\nsession_max_age: 4h\nsession_idle: 10m\n")
	c := admin.DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := admin.Config{Socket: "/run/mw.sock", Listen: "127.0.0.1:7947", TLSCert: "c.pem", TLSKey: "k.pem", AuditRetention: 720 * time.Hour,
		DashboardHTTP: "127.0.0.1:7948", SessionMaxAge: 4 * time.Hour, SessionIdle: 10 * time.Minute}
	if c != want {
		t.Fatalf("decoded %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigSocketPathIn(t *testing.T) {
	if got := (admin.Config{}).SocketPathIn("/var/lib/meshward"); got != "/var/lib/meshward/admin.sock" {
		t.Fatalf("default socket %q", got)
	}
	if got := (admin.Config{Socket: "/run/mw.sock"}).SocketPathIn("/var/lib/meshward"); got != "/run/mw.sock" {
		t.Fatalf("configured socket %q", got)
	}
}
