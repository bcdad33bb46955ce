package detectors

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of SyslogSource.
const (
	// DefaultSyslogAddr is where a SyslogSource listens when neither
	// address is set: the loopback interface only.
	DefaultSyslogAddr            = "127.0.0.1:5514"
	DefaultSyslogMaxMessageBytes = 8 << 10
	DefaultSyslogMaxConns        = 256
	DefaultSyslogIdleTimeout     = 5 * time.Minute
)

func init() { RegisterSource("syslog", newSyslogSource) }

// newSyslogSource listens for syslog when the section enables it.
func newSyslogSource(c Config) (Source, error) {
	sl := c.Syslog
	if !sl.Enabled {
		return nil, nil
	}
	return &SyslogSource{UDPAddr: sl.UDP, TCPAddr: sl.TCP, MaxMessageBytes: sl.MaxMessageBytes,
		MaxConns: sl.MaxConns, IdleTimeout: sl.IdleTimeout}, nil
}

// ErrSyslogRunning is returned by Run on a SyslogSource that is already
// running.
var ErrSyslogRunning = errors.New("syslog source: already running")

// SyslogSource receives syslog messages over the network, RFC 3164 (BSD)
// and RFC 5424, over UDP (one message a datagram) and TCP (RFC 6587: each
// frame is either octet-counted, "LEN SP MSG", or ends with a newline;
// the framing is recognised frame by frame from its first byte, a digit
// or not). Every message is turned into the line shape the parsers read:
// an RFC 3164 message loses its "<PRI>" and is otherwise passed on; an
// RFC 5424 one becomes "TIMESTAMP HOST APP[PROCID]: MSG", its structured
// data and message ID dropped, "-" (NILVALUE) fields left out where they
// can be and a UTF-8 byte order mark removed. Newlines inside a message
// become spaces.
//
// Anyone who can reach the listener can write lines the rules count, so
// it listens on the loopback interface unless told otherwise; point a
// local rsyslog or syslog-ng at it, or set an address on a trusted
// network deliberately.
//
// Every bound is counted: messages longer than MaxMessageBytes are cut
// (SyslogStats.Cut), messages that are not syslog are skipped
// (Malformed), connections beyond MaxConns are closed at once (Refused),
// and a connection that completes no message within IdleTimeout is
// closed (IdleClosed). No input is ever fatal.
//
// Set the fields before Run; do not copy a SyslogSource after first use.
type SyslogSource struct {
	// UDPAddr and TCPAddr are the listen addresses ("host:port"); an empty
	// one is not listened on. When both are empty both default to
	// DefaultSyslogAddr. Port 0 picks a free port; see Addrs.
	UDPAddr string
	TCPAddr string
	// MaxMessageBytes bounds a message (default 8 KiB); a longer one is
	// cut to this length, passed on and counted.
	MaxMessageBytes int
	// MaxConns bounds the TCP connections open at once (default 256).
	MaxConns int
	// IdleTimeout closes a TCP connection that completes no message for
	// this long (default 5 minutes).
	IdleTimeout time.Duration

	mu          sync.Mutex
	ready       chan struct{}
	readyClosed bool
	running     bool
	udpBound    net.Addr
	tcpBound    net.Addr
	listenErr   error // why the last Run could not listen

	messages, bytes, cut, malformed     atomic.Uint64
	conns, refused, idleClosed, acceptE atomic.Uint64
	open                                atomic.Int64
}

var _ ReadySource = (*SyslogSource)(nil)

// SyslogStats counts what a SyslogSource did.
type SyslogStats struct {
	Messages     uint64 // messages passed on as lines
	Bytes        uint64 // message bytes received, framing excluded
	Cut          uint64 // messages cut to MaxMessageBytes
	Malformed    uint64 // messages (or TCP frame headers) that are not syslog, skipped
	Connections  uint64 // TCP connections accepted
	Refused      uint64 // TCP connections closed at once: MaxConns were open
	IdleClosed   uint64 // TCP connections closed after IdleTimeout without a message
	AcceptErrors uint64 // failed accepts (retried after a pause)
	Open         int    // TCP connections open now
}

// Stats returns the source's counters.
func (s *SyslogSource) Stats() SyslogStats {
	return SyslogStats{
		Messages:     s.messages.Load(),
		Bytes:        s.bytes.Load(),
		Cut:          s.cut.Load(),
		Malformed:    s.malformed.Load(),
		Connections:  s.conns.Load(),
		Refused:      s.refused.Load(),
		IdleClosed:   s.idleClosed.Load(),
		AcceptErrors: s.acceptE.Load(),
		Open:         int(s.open.Load()),
	}
}

// Ready returns a channel that is closed once Run has bound its listeners
// (then Addrs reports them) or has failed to (then ReadyErr says why).
func (s *SyslogSource) Ready() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readyLocked()
}

func (s *SyslogSource) readyLocked() chan struct{} {
	if s.ready == nil {
		s.ready = make(chan struct{})
	}
	return s.ready
}

// ReadyErr reports why the last Run could not open its listeners, once
// Ready is closed; nil when they are open.
func (s *SyslogSource) ReadyErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listenErr
}

// Addrs returns the addresses Run is listening on; nil for a protocol it
// does not listen on, or before Ready.
func (s *SyslogSource) Addrs() (udp, tcp net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpBound, s.tcpBound
}

// syslogConfig is one Run's settings, defaults applied.
type syslogConfig struct {
	maxMsg   int
	maxConns int
	idle     time.Duration
}

// Run listens until ctx ends and passes every message on as a line. It
// returns an error when a listener cannot be opened or fails; it returns
// only after every connection it accepted is closed.
func (s *SyslogSource) Run(ctx context.Context, out chan<- string) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return ErrSyslogRunning
	}
	s.running, s.listenErr = true, nil
	if s.readyClosed { // a previous Run's
		s.ready, s.readyClosed = nil, false
	}
	ready := s.readyLocked()
	s.mu.Unlock()
	var once sync.Once
	markReady := func() {
		once.Do(func() {
			s.mu.Lock()
			close(ready)
			s.readyClosed = true
			s.mu.Unlock()
		})
	}
	defer func() {
		markReady()
		s.mu.Lock()
		s.running, s.udpBound, s.tcpBound = false, nil, nil
		s.mu.Unlock()
	}()

	cfg := syslogConfig{maxMsg: s.MaxMessageBytes, maxConns: s.MaxConns, idle: s.IdleTimeout}
	if cfg.maxMsg <= 0 {
		cfg.maxMsg = DefaultSyslogMaxMessageBytes
	}
	if cfg.maxConns <= 0 {
		cfg.maxConns = DefaultSyslogMaxConns
	}
	if cfg.idle <= 0 {
		cfg.idle = DefaultSyslogIdleTimeout
	}
	udpAddr, tcpAddr := s.UDPAddr, s.TCPAddr
	if udpAddr == "" && tcpAddr == "" {
		udpAddr, tcpAddr = DefaultSyslogAddr, DefaultSyslogAddr
	}

	var lc net.ListenConfig
	var pc net.PacketConn
	var ln net.Listener
	var err error
	if udpAddr != "" {
		if pc, err = lc.ListenPacket(ctx, "udp", udpAddr); err != nil {
			return s.listenFailed(fmt.Errorf("syslog source: listen udp %s: %w", udpAddr, err))
		}
		defer pc.Close()
		if uc, ok := pc.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(1 << 20) // best effort: absorbs bursts
		}
	}
	if tcpAddr != "" {
		if ln, err = lc.Listen(ctx, "tcp", tcpAddr); err != nil {
			return s.listenFailed(fmt.Errorf("syslog source: listen tcp %s: %w", tcpAddr, err))
		}
		defer ln.Close()
	}
	s.mu.Lock()
	if pc != nil {
		s.udpBound = pc.LocalAddr()
	}
	if ln != nil {
		s.tcpBound = ln.Addr()
	}
	s.mu.Unlock()
	markReady()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	if pc != nil {
		wg.Go(func() {
			if err := s.serveUDP(ctx, pc, out, cfg); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	if ln != nil {
		wg.Go(func() {
			if err := s.serveTCP(ctx, ln, out, cfg); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	<-ctx.Done()
	if pc != nil {
		pc.Close()
	}
	if ln != nil {
		ln.Close()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// listenFailed records err for ReadyErr and returns it.
func (s *SyslogSource) listenFailed(err error) error {
	s.mu.Lock()
	s.listenErr = err
	s.mu.Unlock()
	return err
}

func (s *SyslogSource) serveUDP(ctx context.Context, pc net.PacketConn, out chan<- string, cfg syslogConfig) error {
	buf := make([]byte, 64<<10) // the largest datagram
	var line []byte
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("syslog source: read udp: %w", err)
		}
		line = s.deliver(ctx, out, buf[:n], n, cfg.maxMsg, line)
	}
}

func (s *SyslogSource) serveTCP(ctx context.Context, ln net.Listener, out chan<- string, cfg syslogConfig) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
	)
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	}
	defer wg.Wait()
	stop := context.AfterFunc(ctx, closeAll)
	// Whatever ends the accept loop, the connections end with it. The
	// AfterFunc alone does not do: ctx's Done channel closes before its
	// after-funcs are started, so the loop can see ctx ended, return and
	// stop the func before it ran, leaving every reader blocked until it
	// idled out.
	defer func() {
		stop()
		closeAll()
	}()
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("syslog source: accept: %w", err)
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does.
			s.acceptE.Add(1)
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		pause = 0
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			return nil
		}
		if len(conns) >= cfg.maxConns {
			mu.Unlock()
			c.Close()
			s.refused.Add(1)
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		s.conns.Add(1)
		s.open.Add(1)
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
				s.open.Add(-1)
			}()
			s.readConn(ctx, c, out, cfg)
		})
	}
}

// readConn reads frames from one TCP connection until it ends, fails,
// idles out or ctx ends.
func (s *SyslogSource) readConn(ctx context.Context, c net.Conn, out chan<- string, cfg syslogConfig) {
	br := bufio.NewReaderSize(c, 16<<10)
	msg := make([]byte, 0, min(cfg.maxMsg, 4<<10))
	var line []byte
	for {
		if err := c.SetReadDeadline(time.Now().Add(cfg.idle)); err != nil {
			return
		}
		var (
			n    int
			kind frameKind
			err  error
		)
		msg, n, kind, err = readFrame(br, msg, cfg.maxMsg)
		if kind == frameMalformed {
			s.malformed.Add(1)
		}
		if err != nil && kind != frameMessage {
			s.connDone(err)
			return
		}
		if kind != frameMessage {
			continue
		}
		// A last message without its newline is still a message.
		line = s.deliver(ctx, out, msg, n, cfg.maxMsg, line)
		if err != nil || ctx.Err() != nil {
			return
		}
	}
}

// connDone counts why a connection ended.
func (s *SyslogSource) connDone(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.idleClosed.Add(1)
	}
}

// deliver converts one message (its first bytes, whole length n) and
// passes it on. buf is scratch space, returned for reuse.
func (s *SyslogSource) deliver(ctx context.Context, out chan<- string, msg []byte, n, maxMsg int, buf []byte) []byte {
	s.bytes.Add(uint64(n))
	if len(msg) > maxMsg {
		msg = msg[:maxMsg]
	}
	if n > maxMsg {
		s.cut.Add(1)
	}
	buf, ok := AppendSyslogLine(buf[:0], msg)
	if !ok {
		s.malformed.Add(1)
		return buf
	}
	select {
	case out <- string(buf):
		s.messages.Add(1)
	case <-ctx.Done():
	}
	return buf
}
