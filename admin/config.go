package admin

import (
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/meshward/meshward/internal/confcheck"
)

// DefaultSocketName is the admin socket's name in the data directory when
// Config.Socket is empty.
const DefaultSocketName = "admin.sock"

// Config is the admin section of a node's configuration: where the admin
// API the CLI and dashboard talk to listens, and how long its audit trail
// is kept.
type Config struct {
	// Socket is the Unix socket (mode 0600); empty means admin.sock in
	// data_dir (see SocketPathIn). The local admin token is written
	// beside it (admin.token).
	Socket string `yaml:"socket"`
	// Listen is an optional host:port for HTTPS; it needs TLSCert and TLSKey.
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// AuditRetention is how long audit entries are kept.
	AuditRetention time.Duration `yaml:"audit_retention"`
	// DashboardHTTP is an optional loopback host:port (127.0.0.1:PORT or
	// [::1]:PORT) serving the API and the web dashboard over plain HTTP,
	// for a browser on the same host. Any other address is refused: the
	// dashboard is served off-host only over HTTPS (Listen).
	DashboardHTTP string `yaml:"dashboard_http"`
	// SessionMaxAge is how long a dashboard session lasts at most;
	// SessionIdle ends one unused for that long.
	SessionMaxAge time.Duration `yaml:"session_max_age"`
	SessionIdle   time.Duration `yaml:"session_idle"`
}

// DefaultConfig returns the admin section's defaults: the socket in the
// data directory, no HTTPS listener, audit entries kept for 90 days.
func DefaultConfig() Config {
	return Config{AuditRetention: 90 * 24 * time.Hour, SessionMaxAge: DefaultSessionMaxAge, SessionIdle: DefaultSessionIdle}
}

// Validate checks every field and returns all problems found, joined; each
// is a *confcheck.FieldError naming the field relative to the section.
func (c Config) Validate() error {
	var p confcheck.Problems
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			p.Add("listen", c.Listen, "want host:port")
		}
		if c.TLSCert == "" || c.TLSKey == "" {
			p.Add("tls_cert", c.TLSCert, "admin.listen serves HTTPS only: set admin.tls_cert and admin.tls_key")
		}
	}
	if c.AuditRetention <= 0 {
		p.Add("audit_retention", c.AuditRetention, "must be positive")
	}
	if c.DashboardHTTP != "" {
		if err := checkLoopback(c.DashboardHTTP); err != nil {
			p.Add("dashboard_http", c.DashboardHTTP, err.Error())
		}
	}
	if c.SessionMaxAge <= 0 {
		p.Add("session_max_age", c.SessionMaxAge, "must be positive")
	}
	if c.SessionIdle <= 0 || c.SessionIdle > c.SessionMaxAge {
		p.Add("session_idle", c.SessionIdle, "must be positive and at most session_max_age")
	}
	return p.Err()
}

// SocketPathIn is the admin socket's path for a node whose data directory
// is dataDir: Socket, or admin.sock in dataDir when Socket is empty.
func (c Config) SocketPathIn(dataDir string) string {
	if c.Socket != "" {
		return c.Socket
	}
	return filepath.Join(dataDir, DefaultSocketName)
}

// checkLoopback accepts a host:port whose host is a loopback IP address.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return errors.New("plain HTTP is served on a loopback address only (127.0.0.1:PORT or [::1]:PORT); use admin.listen for HTTPS")
	}
	return nil
}
