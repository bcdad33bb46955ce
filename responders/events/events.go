package events

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/responders/webhook"
)

// Config sends detections, sightings and policy steps to a SIEM and to
// SOAR webhooks.
type Config struct {
	// Syslog destinations receive CEF records in RFC 5424 messages.
	Syslog []SyslogSinkConfig `yaml:"syslog"`
	// JSONLines is a file receiving one JSON object per event.
	JSONLines string `yaml:"json_lines"`
	// QueueSize bounds the events waiting for delivery; past it they are
	// dropped and counted.
	QueueSize int           `yaml:"queue_size"`
	Webhook   WebhookConfig `yaml:"webhook"`
}

// SyslogSinkConfig is one SIEM syslog destination.
type SyslogSinkConfig struct {
	Network  string `yaml:"network"` // udp or tcp
	Address  string `yaml:"address"` // host:port
	Facility int    `yaml:"facility"`
}

// WebhookConfig posts every event, signed with HMAC-SHA256, through a
// queue kept in the store so nothing is lost while the receiver is down.
type WebhookConfig struct {
	URL string `yaml:"url"`
	// SecretFile holds the HMAC key (at least 16 bytes).
	SecretFile string        `yaml:"secret_file"`
	Timeout    time.Duration `yaml:"timeout"`
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// DefaultConfig returns the section's defaults: no output.
func DefaultConfig() Config {
	return Config{QueueSize: siem.DefaultQueueSize, Webhook: WebhookConfig{
		Timeout: 10 * time.Second, MinBackoff: 500 * time.Millisecond, MaxBackoff: time.Minute}}
}

// Validate checks the section and returns every problem, joined, each a
// *confcheck.FieldError whose Field is relative to the section
// ("syslog[0].address", "webhook.url").
func (c Config) Validate() error {
	var p confcheck.Problems
	for i, s := range c.Syslog {
		f := fmt.Sprintf("syslog[%d]", i)
		if s.Network != "udp" && s.Network != "tcp" {
			p.Add(f+".network", s.Network, "allowed values: udp, tcp")
		}
		if _, _, err := net.SplitHostPort(s.Address); err != nil {
			p.Add(f+".address", s.Address, "want host:port")
		}
		if s.Facility < 0 || s.Facility > 23 {
			p.Add(f+".facility", s.Facility, "must be 0..23")
		}
	}
	if c.QueueSize < 1 {
		p.Add("queue_size", c.QueueSize, "must be at least 1")
	}
	if w := c.Webhook; w.URL != "" {
		if _, err := intel.NewIndicator(intel.URL, w.URL); err != nil {
			p.Add("webhook.url", w.URL, "want an absolute http or https URL")
		}
		if w.SecretFile == "" {
			p.Add("webhook.secret_file", `""`, "required with events.webhook.url: receivers verify the HMAC signature")
		}
		if w.Timeout <= 0 || w.MinBackoff <= 0 || w.MaxBackoff < w.MinBackoff {
			p.Add("webhook.timeout", w.Timeout, "timeout and min_backoff must be positive, max_backoff at least min_backoff")
		}
	}
	return p.Err()
}

// Deps are what the outputs need from the running node.
type Deps struct {
	// Logger is the parent of the outputs' loggers (default: discard).
	Logger *slog.Logger
	// Hostname and Version go into every syslog record (the node's site
	// and build).
	Hostname, Version string
	// WebhookQueue opens the durable queue the webhook delivers from;
	// called only when the webhook is configured.
	WebhookQueue func() (webhook.Queue, error)
}

// Build makes the output of cfg: every configured sink behind one bounded
// queue. It returns nil, and no error, when no sink is configured. Nothing
// is delivered until the output's Start; its Close closes the sinks. On
// error the sinks already made are closed.
func Build(cfg Config, deps Deps) (*siem.Output, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	var sinks []siem.Sink
	fail := func(err error) (*siem.Output, error) {
		for _, s := range sinks {
			_ = s.Close()
		}
		return nil, err
	}
	for i, s := range cfg.Syslog {
		sl, err := siem.NewSyslog(siem.SyslogConfig{Network: s.Network, Address: s.Address, Facility: s.Facility,
			Hostname: deps.Hostname, Version: deps.Version})
		if err != nil {
			return fail(fmt.Errorf("events.syslog[%d]: %w", i, err))
		}
		sinks = append(sinks, sl)
	}
	if cfg.JSONLines != "" {
		j, err := siem.NewJSONLines(cfg.JSONLines)
		if err != nil {
			return fail(fmt.Errorf("events.json_lines: %w", err))
		}
		sinks = append(sinks, j)
	}
	if w := cfg.Webhook; w.URL != "" {
		secret, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return fail(fmt.Errorf("events.webhook.secret_file: %w", err))
		}
		if deps.WebhookQueue == nil {
			return fail(fmt.Errorf("events.webhook: no queue to deliver from"))
		}
		q, err := deps.WebhookQueue()
		if err != nil {
			return fail(fmt.Errorf("events.webhook: %w", err))
		}
		wh, err := webhook.New(webhook.Config{URL: w.URL, Secret: bytes.TrimSpace(secret), Timeout: w.Timeout,
			MinBackoff: w.MinBackoff, MaxBackoff: w.MaxBackoff, Logger: deps.Logger.With("part", "webhook")}, q)
		if err != nil {
			return fail(fmt.Errorf("events.webhook: %w", err))
		}
		sinks = append(sinks, wh)
	}
	if len(sinks) == 0 {
		return nil, nil
	}
	return siem.New(sinks, cfg.QueueSize, deps.Logger.With("part", "events")), nil
}
