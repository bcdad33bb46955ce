package detectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

func TestAppendSyslogLine(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"<38>Nov 28 12:00:01 web-1 sshd[42]: Failed password for root from 203.0.113.7 port 22 ssh2",
			"Nov 28 12:00:01 web-1 sshd[42]: Failed password for root from 203.0.113.7 port 22 ssh2"},
		{"<38>Nov  2 12:00:01 sshd[42]: Failed password for root from 203.0.113.7 port 22 ssh2\n",
			"Nov  2 12:00:01 - sshd[42]: Failed password for root from 203.0.113.7 port 22 ssh2"},
		{"<38>2024-11-28T12:00:01.123456+01:00 web-1 sshd[42]: hi", "2024-11-28T12:00:01.123456+01:00 web-1 sshd[42]: hi"},
		{"<13>just text", "just text"},
		{"<38>1 2024-11-28T12:00:01.003Z web-1 sshd 42 - - Failed password for root from 203.0.113.7 port 22 ssh2",
			"2024-11-28T12:00:01.003Z web-1 sshd[42]: Failed password for root from 203.0.113.7 port 22 ssh2"},
		{`<165>1 2003-10-11T22:14:15.003Z host.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Appl\]ica\"tion"][x@1 a="]"] ` + "\xef\xbb\xbfAn application event",
			"2003-10-11T22:14:15.003Z host.example.com evntslog: An application event"},
		{"<38>1 - - sshd 42 - -", "- sshd[42]: "},
		{"<38>1 - web-1 - - - - hello\nworld", "web-1 hello world"},
		{"<38>1 2024-11-28T12:00:01Z web-1 app proc-x - [a b=\"c\"]", "2024-11-28T12:00:01Z web-1 app: "},
		{"<0>1 2024-11-28T12:00:01Z h a 1 m -", "2024-11-28T12:00:01Z h a[1]: "},
	} {
		got, ok := AppendSyslogLine(nil, []byte(tc.in))
		if !ok || string(got) != tc.want {
			t.Errorf("AppendSyslogLine(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{
		"", "<", "<>", "<38>", "<38>  ", "hello", "<192>Nov 28 12:00:01 h a: b", "<1234>x", "<3a>x",
		"<38>1 ", "<38>1 2024-11-28T12:00:01Z", "<38>1 2024-11-28T12:00:01Z h a p m",
		"<38>1 2024-11-28T12:00:01Z h a p m x", "<38>1 2024-11-28T12:00:01Z h a p m [a b=\"]",
		"<38>1 2024-11-28T12:00:01Z h a p m -x", "<38>1 yesterday h a p m - msg",
		"<38>1 2024-11-28T12:00:01Z " + strings.Repeat("h", 256) + " a p m - msg",
	} {
		if got, ok := AppendSyslogLine(nil, []byte(bad)); ok {
			t.Errorf("AppendSyslogLine(%q) = %q, want malformed", bad, got)
		}
	}
}

func TestSyslogLinesParse(t *testing.T) {
	for _, in := range []string{
		"<38>Nov 28 12:00:01 web-1 sshd[42]: Failed password for root from 203.0.113.7 port 22 ssh2",
		"<38>Nov 28 12:00:01 sshd[42]: Failed password for root from 203.0.113.7 port 22 ssh2",
		"<38>1 2024-11-28T12:00:01.003Z web-1 sshd 42 - [meta x=\"1\"] \xef\xbb\xbfFailed password for root from 203.0.113.7 port 22 ssh2",
		"<38>1 - - sshd 42 - - Failed password for root from 203.0.113.7 port 22 ssh2",
		"<38>1 2024-11-28T12:00:01Z - sshd-session - - - Failed password for root from 203.0.113.7 port 22 ssh2",
	} {
		line, ok := AppendSyslogLine(nil, []byte(in))
		if !ok {
			t.Fatalf("%q: malformed", in)
		}
		var ev Event
		if res := parseLine(string(line), &ev); res != resMatched || ev.Src.String() != "203.0.113.7" || ev.Kind != KindSSHFailed {
			t.Errorf("%q became %q, which parses as %v %+v", in, line, res, ev)
		}
	}
}

// syslogRun is a SyslogSource running on loopback ports chosen by the
// system, and what it emitted.
type syslogRun struct {
	src      *SyslogSource
	lines    chan string
	udp, tcp net.Addr
	cancel   context.CancelFunc
	done     chan error
}

func startSyslog(t *testing.T, src *SyslogSource) *syslogRun {
	t.Helper()
	if src.UDPAddr == "" && src.TCPAddr == "" {
		src.UDPAddr, src.TCPAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &syslogRun{src: src, lines: make(chan string, 1024), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, r.lines) }()
	select {
	case <-src.Ready():
	case err := <-r.done:
		t.Fatalf("syslog source: %v", err)
	}
	r.udp, r.tcp = src.Addrs()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *syslogRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.done <- nil // stop is idempotent
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func (r *syslogRun) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-r.lines:
			if got != w {
				t.Fatalf("got line %q, want %q", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %q", w)
		}
	}
}

func dialT(t *testing.T, network string, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.Dial(network, addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func TestSyslogUDP(t *testing.T) {
	r := startSyslog(t, &SyslogSource{UDPAddr: "127.0.0.1:0"})
	if r.tcp != nil {
		t.Fatalf("listening on tcp %v, which was not asked for", r.tcp)
	}
	if ua, ok := r.udp.(*net.UDPAddr); !ok || !ua.IP.IsLoopback() || ua.Port == 0 {
		t.Fatalf("udp address %v", r.udp)
	}
	c := dialT(t, "udp", r.udp)
	write(t, c, "<38>Nov 28 12:00:01 web-1 sshd[42]: one")
	write(t, c, "not syslog")
	write(t, c, "<38>1 2024-11-28T12:00:01Z web-1 sshd 42 - - two\n")
	r.expect(t, "Nov 28 12:00:01 web-1 sshd[42]: one", "2024-11-28T12:00:01Z web-1 sshd[42]: two")
	waitUntil(t, "the messages to be counted", func() bool { return r.src.Stats().Messages == 2 })
	st := r.src.Stats()
	if st.Messages != 2 || st.Malformed != 1 || st.Bytes != uint64(39+10+49) {
		t.Fatalf("stats %+v", st)
	}
}

func TestSyslogUDPBruteForceFires(t *testing.T) {
	src := &SyslogSource{UDPAddr: "127.0.0.1:0"}
	eng, err := NewRulesEngine(BuiltinRules(), EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sightings := make(chan intel.Sighting, 16)
	done := make(chan error, 1)
	go func() {
		done <- Run(t.Context(), src, eng, func(s intel.Sighting) { sightings <- s })
	}()
	<-src.Ready()
	udp, _ := src.Addrs()
	if udp == nil {
		t.Fatal(<-done)
	}
	c := dialT(t, "udp", udp)
	now := time.Now().UTC()
	for i := range 5 {
		stamp := now.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano)
		if i%2 == 0 {
			write(t, c, fmt.Sprintf("<38>1 %s web-1 sshd %d - [origin ip=\"192.0.2.1\"] Failed password for root from 203.0.113.9 port %d ssh2", stamp, 100+i, 40000+i))
		} else {
			write(t, c, fmt.Sprintf("<38>%s web-1 sshd[%d]: Failed password for invalid user u%d from 203.0.113.9 port %d ssh2", now.Local().Format(time.Stamp), 100+i, i, 40000+i))
		}
	}
	select {
	case s := <-sightings:
		if s.Detector != "ssh-bruteforce" || s.Indicator.Value != "203.0.113.9" {
			t.Fatalf("sighting %+v", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no sighting; source %+v engine %+v", src.Stats(), eng.Stats())
	}
}

func TestSyslogTCPOctetCounting(t *testing.T) {
	r := startSyslog(t, &SyslogSource{TCPAddr: "127.0.0.1:0"})
	c := dialT(t, "tcp", r.tcp)
	m1 := "<38>Nov 28 12:00:01 web-1 sshd[42]: one"
	m2 := "<38>1 2024-11-28T12:00:01Z web-1 sshd 42 - - two\nlines"
	m3 := "<38>Nov 28 12:00:03 web-1 sshd[42]: three"
	frame := func(m string) string { return fmt.Sprintf("%d %s", len(m), m) }
	// A frame split across writes (in its header and in its body), then
	// two frames in one write.
	f1 := frame(m1)
	write(t, c, f1[:1])
	write(t, c, f1[1:10])
	write(t, c, f1[10:])
	write(t, c, frame(m2)+frame(m3))
	r.expect(t, "Nov 28 12:00:01 web-1 sshd[42]: one", "2024-11-28T12:00:01Z web-1 sshd[42]: two lines", "Nov 28 12:00:03 web-1 sshd[42]: three")
	waitUntil(t, "the messages to be counted", func() bool { return r.src.Stats().Messages == 3 })
	if st := r.src.Stats(); st.Messages != 3 || st.Connections != 1 || st.Malformed != 0 || st.Bytes != uint64(len(m1)+len(m2)+len(m3)) {
		t.Fatalf("stats %+v", st)
	}
}

func TestSyslogTCPNewlineFraming(t *testing.T) {
	r := startSyslog(t, &SyslogSource{TCPAddr: "127.0.0.1:0"})
	c := dialT(t, "tcp", r.tcp)
	write(t, c, "<38>Nov 28 12:00:01 web-1 ss")
	write(t, c, "hd[42]: one\r\n<38>1 2024-11-28T12:00:01Z web-1 sshd 42 - - two\n\n<38>Nov 28 12:00:03 web-1 sshd[42]: three\n")
	// A message cut short by the end of the connection is still one.
	write(t, c, "<38>Nov 28 12:00:04 web-1 sshd[42]: four")
	c.(*net.TCPConn).CloseWrite()
	r.expect(t, "Nov 28 12:00:01 web-1 sshd[42]: one", "2024-11-28T12:00:01Z web-1 sshd[42]: two",
		"Nov 28 12:00:03 web-1 sshd[42]: three", "Nov 28 12:00:04 web-1 sshd[42]: four")
	waitUntil(t, "the connection to close", func() bool { return r.src.Stats().Open == 0 })
}

func TestSyslogOversizedCut(t *testing.T) {
	r := startSyslog(t, &SyslogSource{MaxMessageBytes: 64})
	long := "<38>Nov 28 12:00:01 web-1 sshd[42]: " + strings.Repeat("x", 200)
	want := long[4:64]
	u := dialT(t, "udp", r.udp)
	write(t, u, long)
	r.expect(t, want)
	c := dialT(t, "tcp", r.tcp)
	write(t, c, fmt.Sprintf("%d %s", len(long), long))
	write(t, c, "13 <38>short one")
	r.expect(t, want, "short one")
	c2 := dialT(t, "tcp", r.tcp)
	write(t, c2, long+"\n<38>short two\n")
	r.expect(t, want, "short two")
	waitUntil(t, "the messages to be counted", func() bool { return r.src.Stats().Messages == 5 })
	if st := r.src.Stats(); st.Cut != 3 || st.Messages != 5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSyslogMalformedSkipped(t *testing.T) {
	r := startSyslog(t, &SyslogSource{})
	c := dialT(t, "tcp", r.tcp)
	// A bad octet count header, a frame that is not syslog, a bad RFC
	// 5424 header, an absurd length: each is skipped and counted, and the
	// connection reads on.
	write(t, c, "12x garbage\n")
	write(t, c, "5 hello")
	write(t, c, "<38>1 bad\n")
	write(t, c, "12345678901234 abc\n")
	write(t, c, "<38>ok\n")
	r.expect(t, "ok")
	u := dialT(t, "udp", r.udp)
	write(t, u, "\x00\xff\xfe")
	write(t, u, "<38>ok udp")
	r.expect(t, "ok udp")
	waitUntil(t, "the messages to be counted", func() bool { return r.src.Stats().Messages == 2 })
	if st := r.src.Stats(); st.Malformed != 5 || st.Messages != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSyslogConnectionCap(t *testing.T) {
	r := startSyslog(t, &SyslogSource{TCPAddr: "127.0.0.1:0", MaxConns: 2})
	var conns []net.Conn
	for i := range 2 {
		c := dialT(t, "tcp", r.tcp)
		write(t, c, fmt.Sprintf("<38>conn %d\n", i))
		r.expect(t, fmt.Sprintf("conn %d", i))
		conns = append(conns, c)
	}
	extra := dialT(t, "tcp", r.tcp)
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection beyond the cap was not closed")
	}
	waitUntil(t, "the refusal to be counted", func() bool { return r.src.Stats().Refused == 1 })
	conns[0].Close()
	waitUntil(t, "a slot to free", func() bool { return r.src.Stats().Open == 1 })
	c := dialT(t, "tcp", r.tcp)
	write(t, c, "<38>conn 3\n")
	r.expect(t, "conn 3")
	if st := r.src.Stats(); st.Connections != 3 || st.Refused != 1 || st.Open != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSyslogIdleTimeout(t *testing.T) {
	r := startSyslog(t, &SyslogSource{TCPAddr: "127.0.0.1:0", IdleTimeout: 20 * time.Millisecond})
	c := dialT(t, "tcp", r.tcp)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("an idle connection was not closed")
	}
	waitUntil(t, "the idle close to be counted", func() bool { return r.src.Stats().IdleClosed == 1 })
}

func TestSyslogStopClosesConnections(t *testing.T) {
	r := startSyslog(t, &SyslogSource{})
	c := dialT(t, "tcp", r.tcp)
	write(t, c, "<38>hello\n")
	r.expect(t, "hello")
	r.stop(t)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Run returned")
	}
	if udp, tcp := r.src.Addrs(); udp != nil || tcp != nil {
		t.Fatalf("Addrs after Run: %v %v", udp, tcp)
	}
	// The source can run again.
	startSyslog(t, r.src).expect(t)
}

func TestSyslogErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src := &SyslogSource{TCPAddr: ln.Addr().String()}
	if err := src.Run(t.Context(), make(chan string)); err == nil {
		t.Fatal("Run on a port in use succeeded")
	}
	select {
	case <-src.Ready():
	default:
		t.Fatal("Ready not closed after a failed Run")
	}
	r := startSyslog(t, &SyslogSource{})
	if err := r.src.Run(t.Context(), make(chan string)); !errors.Is(err, ErrSyslogRunning) {
		t.Fatalf("second Run: %v", err)
	}
}

func BenchmarkSyslogUDP(b *testing.B) {
	src := &SyslogSource{UDPAddr: "127.0.0.1:0"}
	lines := make(chan string, 4096)
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, lines) }()
	<-src.Ready()
	udp, _ := src.Addrs()
	c, err := net.Dial("udp", udp.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := []byte("<38>1 2024-11-28T12:00:01.003Z web-1 sshd 4242 - [meta seq=\"1\"] Failed password for root from 203.0.113.7 port 52311 ssh2")
	// Send in bursts of 32 and drain, so that the socket buffer does not
	// overflow: the figure is what the source receives and converts, not
	// what the kernel drops.
	const burst = 32
	received := 0
	start := time.Now()
	for b.Loop() {
		for range burst {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		for range burst {
			select {
			case <-lines:
				received++
			case <-time.After(5 * time.Second):
				b.Fatalf("message lost after %d", received)
			}
		}
	}
	b.SetBytes(int64(len(msg)) * burst)
	b.ReportMetric(float64(received)/time.Since(start).Seconds(), "msgs/s")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// When the accept loop ends for any reason, its open connections end with
// it: here the listener fails while ctx lives on and one connection is
// idle, and serveTCP must return (not wait out the 5-minute idle timeout).
func TestSyslogServeTCPClosesConnectionsOnReturn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src := &SyslogSource{}
	out := make(chan string, 1)
	cfg := syslogConfig{maxMsg: DefaultSyslogMaxMessageBytes, maxConns: 4, idle: DefaultSyslogIdleTimeout}
	done := make(chan error, 1)
	go func() { done <- src.serveTCP(t.Context(), ln, out, cfg) }()
	c := dialT(t, "tcp", ln.Addr())
	write(t, c, "<38>held\n")
	select {
	case got := <-out:
		if got != "held" {
			t.Fatalf("got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no line")
	}
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("serveTCP: %v, want the listener's close", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveTCP did not return with a connection open")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after serveTCP returned")
	}
}
