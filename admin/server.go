package admin

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/internal/atomicfile"
	"github.com/meshward/meshward/internal/routine"
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document of the API.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// ErrSocketInUse is returned by Start when another process answers on the
// socket path.
var ErrSocketInUse = errors.New("admin socket in use by another process")

// Server timeouts and limits.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 2 * time.Minute // a proposal may wait for a leader
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	shutdownTimeout   = 5 * time.Second

	// LocalAdminName is the name of the token written to the token file.
	LocalAdminName = "local-admin"
	// DefaultTokenFileName is the token file's name next to the socket.
	DefaultTokenFileName = "admin.token"
)

// Options configures a Server.
type Options struct {
	// Node is the node the API serves. Required.
	Node Node
	// Store keeps tokens and the audit trail. Required.
	Store Store
	// SocketPath is the Unix socket to listen on; "" for none.
	SocketPath string
	// TokenFile receives the local admin token (see the package doc).
	// Empty means admin.token in the socket's directory; with no socket
	// and no TokenFile, no token is written.
	TokenFile string
	// TCPAddr is a host:port to serve HTTPS on; "" for none. It needs
	// TLSCertFile and TLSKeyFile.
	TCPAddr     string
	TLSCertFile string
	TLSKeyFile  string
	// DashboardHTTP is a loopback host:port to serve the API and the
	// dashboard on over plain HTTP, for a browser on the same host; ""
	// for none. Any other address is refused.
	DashboardHTTP string
	// Sessions bound the dashboard's sessions; zero fields take the
	// defaults.
	Sessions SessionOptions
	// Version is reported in Status when the node leaves it empty.
	Version string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil keeps them
	// unregistered.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now. For tests.
	Now func() time.Time
}

func (o *Options) validate() error {
	var errs []error
	if o.Node == nil {
		errs = append(errs, errors.New("Node is required"))
	}
	if o.Store == nil {
		errs = append(errs, errors.New("Store is required"))
	}
	if o.SocketPath == "" && o.TCPAddr == "" && o.DashboardHTTP == "" {
		errs = append(errs, errors.New("one of SocketPath, TCPAddr and DashboardHTTP is required"))
	}
	if o.DashboardHTTP != "" {
		if err := checkLoopback(o.DashboardHTTP); err != nil {
			errs = append(errs, fmt.Errorf("DashboardHTTP %q: %w", o.DashboardHTTP, err))
		}
	}
	if o.TCPAddr != "" && (o.TLSCertFile == "" || o.TLSKeyFile == "") {
		errs = append(errs, errors.New("TCPAddr needs TLSCertFile and TLSKeyFile: the API is served over TCP only with TLS"))
	}
	return errors.Join(errs...)
}

// Server serves the admin API: New builds it, Start serves it, Close
// stops it.
type Server struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	handler http.Handler
	metrics *metrics

	// What each noun of the API needs, taken from Options.Node and
	// Options.Store.
	statusSvc   StatusService
	memberSvc   MemberService
	policySvc   PolicyService
	sightingSvc SightingService
	reportSvc   ReportService
	operatorSvc OperatorService
	stixSrc     STIXSource // the TAXII collections and the STIX export
	stixReports reportCache
	tokenStore  TokenStore
	auditStore  AuditStore
	ackStore    AckStore
	triageStore TriageStore // nil when Options.Store keeps no triage

	// The dashboard (dashboard*.go).
	sessions  *sessions
	dash      *dashboardMetrics
	hub       *eventHub
	heartbeat time.Duration // of idle event streams

	mu        sync.Mutex // guards what follows; held through Start and Close
	started   bool
	closed    bool
	closeErr  error
	sockInfo  os.FileInfo
	tcp       net.Listener
	plain     net.Listener // DashboardHTTP
	listeners []net.Listener
	srv       *http.Server
	serving   *routine.Group

	authAudit authAudit // failed authentications, audited rate-limited
}

// New checks opts and returns a server that serves nothing until Start.
// It starts no goroutine and touches no file.
func New(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	return newServer(opts), nil
}

// Start is New followed by Server.Start.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Start makes sure the token file holds a valid admin token, listens on
// the configured socket and TCP address, and serves until Close. ctx is
// the parent of every request's context; cancelling it does not stop the
// server, Close does. A server starts once; one that failed to start is
// closed, with nothing left listening.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("admin API: start after Close")
	case s.started:
		return errors.New("admin API: already started")
	}
	s.started = true
	if err := s.start(ctx); err != nil {
		s.closed = true
		s.closeErr = s.shutdown()
		return err
	}
	return nil
}

// start does the work of Start with s.mu held.
func (s *Server) start(ctx context.Context) error {
	opts := s.opts
	if tf := s.tokenFile(); tf != "" {
		if err := s.ensureLocalAdmin(tf); err != nil {
			return err
		}
	}
	var tlsConf *tls.Config
	if opts.TCPAddr != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCertFile, opts.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("admin API: load TLS key pair: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if opts.SocketPath != "" {
		l, fi, err := listenUnix(opts.SocketPath)
		if err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		s.sockInfo = fi
		s.listeners = append(s.listeners, l)
	}
	if opts.TCPAddr != "" {
		l, err := net.Listen("tcp", opts.TCPAddr)
		if err != nil {
			return fmt.Errorf("admin API: listen on %s: %w", opts.TCPAddr, err)
		}
		s.tcp = tls.NewListener(l, tlsConf)
		s.listeners = append(s.listeners, s.tcp)
	}
	if opts.DashboardHTTP != "" {
		l, err := net.Listen("tcp", opts.DashboardHTTP)
		if err != nil {
			return fmt.Errorf("admin API: listen on %s: %w", opts.DashboardHTTP, err)
		}
		s.plain = l
		s.listeners = append(s.listeners, l)
	}
	base := context.WithoutCancel(ctx)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.serving = routine.New(ctx)
	s.serving.Go(s.auditAuthFailures)
	for _, l := range s.listeners {
		s.serving.Go(func(context.Context) {
			if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin API stopped serving", "addr", l.Addr(), "err", err)
			}
		})
	}
	s.log.Info("admin API listening", "socket", opts.SocketPath, "tcp", s.tcpAddr(), "dashboard_http", s.dashboardAddr())
	return nil
}

func newServer(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{
		opts: opts, log: log, now: now, metrics: newMetrics(opts.Registerer),
		statusSvc: opts.Node, memberSvc: opts.Node, policySvc: opts.Node, sightingSvc: opts.Node, reportSvc: opts.Node,
		operatorSvc: opts.Node, stixSrc: opts.Node, tokenStore: opts.Store, auditStore: opts.Store, ackStore: opts.Store,
	}
	s.triageStore, _ = opts.Store.(TriageStore)
	s.sessions = newSessions(opts.Sessions)
	s.dash = newDashboardMetrics(opts.Registerer, s.sessions)
	s.hub = newEventHub(opts.Registerer)
	s.heartbeat = streamHeartbeat
	s.handler = s.topHandler(s.mountTAXII(s.routes().mux(s)))
	return s
}

func (s *Server) tokenFile() string {
	if s.opts.TokenFile != "" {
		return s.opts.TokenFile
	}
	if s.opts.SocketPath != "" {
		return filepath.Join(filepath.Dir(s.opts.SocketPath), DefaultTokenFileName)
	}
	return ""
}

// TokenFile is the path of the local admin token file, or "".
func (s *Server) TokenFile() string { return s.tokenFile() }

// TCPAddr is the address the HTTPS listener is bound to, or "".
func (s *Server) TCPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpAddr()
}

func (s *Server) tcpAddr() string {
	if s.tcp == nil {
		return ""
	}
	return s.tcp.Addr().String()
}

// DashboardAddr is the address the loopback plain-HTTP listener is
// bound to, or "".
func (s *Server) DashboardAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dashboardAddr()
}

func (s *Server) dashboardAddr() string {
	if s.plain == nil {
		return ""
	}
	return s.plain.Addr().String()
}

// Handler is the API's HTTP handler, for embedding it elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the listeners, lets requests in flight finish for a few
// seconds, removes the socket and waits for the serving goroutines. It is
// idempotent, and a server that was never started needs none.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.closeErr = s.shutdown()
	}
	return s.closeErr
}

// shutdown stops whatever start set up, with s.mu held.
func (s *Server) shutdown() error {
	var errs []error
	s.hub.close() // event streams end, so that Shutdown need not wait for them
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := s.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down admin API: %w", err))
			s.srv.Close()
		}
		cancel()
	} else {
		for _, l := range s.listeners {
			l.Close()
		}
	}
	if s.serving != nil {
		s.serving.Close()
	}
	s.flushAuthFailures(true) // the requests in flight have ended or been cut off
	if s.sockInfo != nil {
		// Remove the socket only if it is still ours.
		if fi, err := os.Lstat(s.opts.SocketPath); err == nil && os.SameFile(fi, s.sockInfo) {
			if err := os.Remove(s.opts.SocketPath); err != nil {
				errs = append(errs, fmt.Errorf("remove admin socket: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// listenUnix binds a Unix socket at path with mode 0600, never visible
// with wider permissions: it is bound in a fresh 0700 directory, chmodded
// and renamed into place. A stale socket at path is replaced.
func listenUnix(path string) (*net.UnixListener, os.FileInfo, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, nil, fmt.Errorf("socket path %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, nil, fmt.Errorf("%w: %s", ErrSocketInUse, path)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("socket path: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".admin-sock-")
	if err != nil {
		return nil, nil, fmt.Errorf("create socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tp := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, os.FileInfo, error) {
		l.Close()
		return nil, nil, err
	}
	if err := os.Chmod(tp, 0o600); err != nil {
		return fail(fmt.Errorf("chmod socket: %w", err))
	}
	if err := os.Rename(tp, path); err != nil {
		return fail(fmt.Errorf("move socket into place: %w", err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("stat socket: %w", err))
	}
	return l, fi, nil
}

// ensureLocalAdmin makes sure path holds a working admin token.
func (s *Server) ensureLocalAdmin(path string) error {
	if b, err := os.ReadFile(path); err == nil {
		if c, err := s.authenticate(strings.TrimSpace(string(b))); err == nil && c.role == RoleAdmin {
			return nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin API: read token file: %w", err)
	}
	// The old local admin tokens can no longer be read by anyone.
	toks, err := s.tokenStore.Tokens()
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	for _, t := range toks {
		if t.Name == LocalAdminName {
			if err := s.tokenStore.DeleteToken(t.ID); err != nil {
				return fmt.Errorf("admin API: delete stale local admin token: %w", err)
			}
		}
	}
	ct, err := s.createToken(LocalAdminName, RoleAdmin, "server")
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if err := atomicfile.Write(path, []byte(ct.Secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("admin API: write token file: %w", err)
	}
	s.audit(AuditEntry{
		Time: s.now().UTC(), Actor: "server", Action: "token.create", Target: ct.ID,
		Detail: "local admin token written to " + path, Result: "ok",
	})
	s.log.Info("wrote local admin token", "file", path, "token_id", ct.ID)
	return nil
}
