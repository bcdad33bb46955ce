package siem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshward/meshward/intel"
)

// Sink writes events somewhere. Output calls it from one goroutine.
type Sink interface {
	// Name identifies the sink in logs and metrics.
	Name() string
	// Write delivers one event.
	Write(ctx context.Context, e Event) error
	// Close releases the sink.
	Close() error
}

// DefaultQueueSize is the default capacity of Output's queue.
const DefaultQueueSize = 4096

// OutputStats counts an Output's events.
type OutputStats struct {
	Emitted uint64 // events queued
	Dropped uint64 // events not queued: the queue was full or Output closed
	Written uint64 // successful sink writes
	Failed  uint64 // failed sink writes
}

// Starter is implemented by a sink that runs in the background (the
// webhook's delivery loop): Output.Start starts it with its own context.
type Starter interface {
	Start(ctx context.Context)
}

// Output fans events out to sinks from a bounded queue. Nothing is
// delivered until Start; Close drains the queue and waits.
type Output struct {
	sinks []Sink
	log   *slog.Logger
	queue chan Event

	mu      sync.RWMutex
	started bool
	closed  bool               // intake stopped, queue closed
	abort   context.CancelFunc // cuts the writes of the drain short
	done    chan struct{}      // closed when run returns
	once    sync.Once

	emitted, dropped, written, failed atomic.Uint64
}

// New returns an output that will deliver to sinks. queueSize <= 0 means
// DefaultQueueSize; a nil logger discards. Events emitted before Start
// wait in the queue.
func New(sinks []Sink, queueSize int, logger *slog.Logger) *Output {
	if queueSize <= 0 {
		queueSize = DefaultQueueSize
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Output{sinks: sinks, log: logger, queue: make(chan Event, queueSize), done: make(chan struct{})}
}

// Start starts delivery, and every sink that implements Starter, under
// ctx. When ctx ends, intake stops and what is queued is still written
// (each write bounded by its own timeout), as Close would; Close waits for
// it. Calling Start again, or after Close, does nothing.
func (o *Output) Start(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started || o.closed {
		return
	}
	o.started = true
	for _, s := range o.sinks {
		if st, ok := s.(Starter); ok {
			st.Start(ctx)
		}
	}
	// The drain outlives ctx: only Close's own deadline cuts it short.
	wctx, abort := context.WithCancel(context.WithoutCancel(ctx))
	o.abort = abort
	go o.run(ctx, wctx)
}

// Emit queues e without blocking; it reports false, and counts a drop,
// when the queue is full or the output is closed.
func (o *Output) Emit(e Event) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		o.dropped.Add(1)
		return false
	}
	select {
	case o.queue <- e:
		o.emitted.Add(1)
		return true
	default:
		o.dropped.Add(1)
		return false
	}
}

// Stats returns the output's counters.
func (o *Output) Stats() OutputStats {
	return OutputStats{Emitted: o.emitted.Load(), Dropped: o.dropped.Load(), Written: o.written.Load(), Failed: o.failed.Load()}
}

// stopIntake closes the queue once; run drains it and returns.
func (o *Output) stopIntake() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		close(o.queue)
	}
}

func (o *Output) run(ctx, wctx context.Context) {
	defer close(o.done)
	stop := context.AfterFunc(ctx, o.stopIntake)
	defer stop()
	for e := range o.queue {
		for _, s := range o.sinks {
			if len(e.Sinks) > 0 && !slices.Contains(e.Sinks, SinkClass(s.Name())) {
				continue
			}
			tctx, cancel := context.WithTimeout(wctx, 5*time.Second)
			err := s.Write(tctx, e)
			cancel()
			if err != nil {
				o.failed.Add(1)
				o.log.Warn("siem write failed", "sink", s.Name(), "event", e.ID, "err", err)
				continue
			}
			o.written.Add(1)
		}
	}
}

// Close stops intake, delivers what is queued (each write bounded by its
// own timeout, or cut short by ctx), waits, and closes the sinks.
// Idempotent.
func (o *Output) Close(ctx context.Context) error {
	var errs []error
	o.once.Do(func() {
		o.stopIntake()
		o.mu.RLock()
		started, abort := o.started, o.abort
		o.mu.RUnlock()
		if started {
			select {
			case <-o.done:
			case <-ctx.Done():
				abort()
				<-o.done
			}
			abort()
		}
		for _, s := range o.sinks {
			if err := s.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close sink %s: %w", s.Name(), err))
			}
		}
	})
	return errors.Join(errs...)
}

// Facility numbers of RFC 5424.
const (
	FacilityAuth   = 4
	FacilityLocal0 = 16
)

// SyslogConfig configures a CEF-over-syslog sink.
type SyslogConfig struct {
	Network  string // "udp" or "tcp"
	Address  string // host:port
	Facility int    // RFC 5424 facility, default FacilityAuth
	Hostname string // HOSTNAME field, default os.Hostname
	AppName  string // APP-NAME field, default "meshward"
	Version  string // CEF device version, default "dev"
	Timeout  time.Duration
}

// Syslog sends each event as a CEF record in an RFC 5424 message; over
// TCP, messages are framed by octet counting (RFC 6587). A broken TCP
// connection is redialled on the next write.
type Syslog struct {
	cfg  SyslogConfig
	conn net.Conn
}

var _ Sink = (*Syslog)(nil)

// NewSyslog validates cfg and returns the sink; it dials on first write.
func NewSyslog(cfg SyslogConfig) (*Syslog, error) {
	if cfg.Network != "udp" && cfg.Network != "tcp" {
		return nil, fmt.Errorf("syslog network %q: want udp or tcp", cfg.Network)
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("syslog address %q: %w", cfg.Address, err)
	}
	if cfg.Facility == 0 {
		cfg.Facility = FacilityAuth
	}
	if cfg.Facility < 0 || cfg.Facility > 23 {
		return nil, fmt.Errorf("syslog facility %d out of range 0..23", cfg.Facility)
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
		if cfg.Hostname == "" {
			cfg.Hostname = "-"
		}
	}
	if cfg.AppName == "" {
		cfg.AppName = "meshward"
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	return &Syslog{cfg: cfg}, nil
}

// Name implements Sink.
func (s *Syslog) Name() string { return "syslog-" + s.cfg.Network }

// syslogSeverity maps a severity to RFC 5424's (lower is worse).
func syslogSeverity(e Event) int {
	switch e.Severity {
	case intel.SeverityCritical:
		return 2
	case intel.SeverityHigh:
		return 3
	case intel.SeverityMedium:
		return 4
	case intel.SeverityLow:
		return 5
	}
	return 6
}

// FormatRFC5424 renders the syslog message carrying e as CEF, without
// transport framing.
func (s *Syslog) FormatRFC5424(e Event) string {
	pri := s.cfg.Facility*8 + syslogSeverity(e)
	return "<" + strconv.Itoa(pri) + ">1 " + e.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00") + " " +
		s.cfg.Hostname + " " + s.cfg.AppName + " " + strconv.Itoa(os.Getpid()) + " " + string(e.Kind) + " - " +
		FormatCEF(e, s.cfg.Version)
}

// Write implements Sink.
func (s *Syslog) Write(ctx context.Context, e Event) error {
	msg := s.FormatRFC5424(e)
	if s.cfg.Network == "tcp" {
		msg = strconv.Itoa(len(msg)) + " " + msg
	}
	for attempt := 0; ; attempt++ {
		if s.conn == nil {
			d := net.Dialer{Timeout: s.cfg.Timeout}
			c, err := d.DialContext(ctx, s.cfg.Network, s.cfg.Address)
			if err != nil {
				return fmt.Errorf("dial syslog %s: %w", s.cfg.Address, err)
			}
			s.conn = c
		}
		deadline := time.Now().Add(s.cfg.Timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		s.conn.SetWriteDeadline(deadline)
		_, err := s.conn.Write([]byte(msg))
		if err == nil {
			return nil
		}
		s.conn.Close()
		s.conn = nil
		if attempt > 0 || s.cfg.Network != "tcp" {
			return fmt.Errorf("write syslog %s: %w", s.cfg.Address, err)
		}
	}
}

// Close implements Sink.
func (s *Syslog) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// JSONLines appends each event as one JSON object per line to a file.
type JSONLines struct {
	path string
	f    *os.File
}

var _ Sink = (*JSONLines)(nil)

// NewJSONLines opens (creating, mode 0600) path for appending.
func NewJSONLines(path string) (*JSONLines, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	return &JSONLines{path: path, f: f}, nil
}

// Name implements Sink.
func (j *JSONLines) Name() string { return "jsonl" }

// Write implements Sink. Each line is written with one write call, so
// lines never interleave with another appender's.
func (j *JSONLines) Write(ctx context.Context, e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", j.path, err)
	}
	return nil
}

// Close implements Sink.
func (j *JSONLines) Close() error { return j.f.Close() }
