package admin

import (
	"net"
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
}

// DefaultConfig returns the admin section's defaults: the socket in the
// data directory, no HTTPS listener, audit entries kept for 90 days.
func DefaultConfig() Config {
	return Config{AuditRetention: 90 * 24 * time.Hour}
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
