package siem_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/siem"
)

// parseCEF splits a CEF record into its seven header fields and its
// extension map, undoing the escapes.
func parseCEF(t *testing.T, s string) ([]string, map[string]string) {
	t.Helper()
	var hdr []string
	var cur strings.Builder
	i := 0
	for ; i < len(s) && len(hdr) < 7; i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '|':
			hdr = append(hdr, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if len(hdr) != 7 {
		t.Fatalf("CEF header has %d fields: %q", len(hdr), s)
	}
	ext := map[string]string{}
	rest := s[i:]
	// Keys are the words before an unescaped '='; a value runs up to the
	// space before the next key.
	var keys []int
	for j := 0; j < len(rest); j++ {
		if rest[j] == '\\' {
			j++
			continue
		}
		if rest[j] == '=' {
			k := strings.LastIndexByte(rest[:j], ' ') + 1
			keys = append(keys, k, j)
		}
	}
	for n := 0; n < len(keys); n += 2 {
		k, eq := keys[n], keys[n+1]
		end := len(rest)
		if n+2 < len(keys) {
			end = keys[n+2] - 1
		}
		v := strings.NewReplacer(`\\`, `\`, `\=`, "=", `\n`, "\n", `\r`, "\r").Replace(rest[eq+1 : end])
		ext[rest[k:eq]] = v
	}
	return hdr, ext
}

func testEvent() siem.Event {
	ind, _ := intel.NewIndicator(intel.IPv4, "203.0.113.9")
	s := intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Technique: "T1110.001",
		Severity: intel.SeverityHigh, Confidence: 80, Count: 12}
	e := siem.DetectionEvent("node-a", s, time.UnixMilli(1735787045123))
	e.Reason = `a=b | c\d` + "\nline two"
	return e
}

func checkMessage(t *testing.T, msg string, e siem.Event) {
	t.Helper()
	// <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG
	parts := strings.SplitN(msg, " ", 8)
	if len(parts) != 8 {
		t.Fatalf("not RFC 5424: %q", msg)
	}
	if parts[0] != "<35>1" { // auth (4) * 8 + error (3, high severity)
		t.Errorf("PRI/VERSION = %q, want <35>1", parts[0])
	}
	ts, err := time.Parse(time.RFC3339Nano, parts[1])
	if err != nil || !ts.Equal(e.Time) {
		t.Errorf("TIMESTAMP %q (%v), want %v", parts[1], err, e.Time)
	}
	if parts[2] != "host-1" || parts[3] != "meshward" || parts[5] != string(e.Kind) || parts[6] != "-" {
		t.Errorf("header fields %q", parts[:7])
	}
	if _, err := strconv.Atoi(parts[4]); err != nil {
		t.Errorf("PROCID %q", parts[4])
	}
	hdr, ext := parseCEF(t, parts[7])
	wantHdr := []string{"CEF:0", "Meshward", "meshward", "1.2.3", "detection", "Attack detected", "8"}
	for i := range wantHdr {
		if hdr[i] != wantHdr[i] {
			t.Errorf("CEF header %d = %q, want %q", i, hdr[i], wantHdr[i])
		}
	}
	want := map[string]string{
		"rt": "1735787045123", "externalId": e.ID, "dvchost": "node-a", "src": "203.0.113.9",
		"cs1": "ipv4:203.0.113.9", "cs1Label": "indicator", "cs2": "ssh-bruteforce", "cs2Label": "detector",
		"cs3": "T1110.001", "cs3Label": "attackTechnique", "cs6": "node-a", "cs6Label": "originNode",
		"cn1": "80", "cn1Label": "confidence", "cnt": "12", "msg": e.Reason,
	}
	for k, v := range want {
		if ext[k] != v {
			t.Errorf("extension %s = %q, want %q", k, ext[k], v)
		}
	}
	if len(ext) != len(want) {
		t.Errorf("extension has %d keys, want %d: %v", len(ext), len(want), ext)
	}
}

func newSyslog(t *testing.T, network, addr string) *siem.Syslog {
	t.Helper()
	s, err := siem.NewSyslog(siem.SyslogConfig{Network: network, Address: addr, Hostname: "host-1", Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	out := siem.New([]siem.Sink{newSyslog(t, "udp", pc.LocalAddr().String())}, 0, nil)
	out.Start(t.Context())
	e := testEvent()
	if !out.Emit(e) {
		t.Fatal("Emit refused")
	}
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 8192)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, string(buf[:n]), e)
	if err := out.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := out.Stats(); st.Written != 1 || st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSyslogTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msgs := make(chan string, 10)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			// Octet counting: "LEN SP MSG".
			lenStr, err := r.ReadString(' ')
			if err != nil {
				return
			}
			n, err := strconv.Atoi(strings.TrimSpace(lenStr))
			if err != nil {
				msgs <- "bad frame length " + lenStr
				return
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return
			}
			msgs <- string(b)
		}
	}()
	out := siem.New([]siem.Sink{newSyslog(t, "tcp", ln.Addr().String())}, 0, nil)
	out.Start(t.Context())
	defer out.Close(t.Context())
	e1, e2 := testEvent(), testEvent()
	out.Emit(e1)
	out.Emit(e2)
	for _, e := range []siem.Event{e1, e2} {
		select {
		case m := <-msgs:
			checkMessage(t, m, e)
		case <-time.After(10 * time.Second):
			t.Fatal("no message received")
		}
	}
}

func TestJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	sink, err := siem.NewJSONLines(path)
	if err != nil {
		t.Fatal(err)
	}
	out := siem.New([]siem.Sink{sink}, 0, nil)
	out.Start(t.Context())
	ind, _ := intel.NewIndicator(intel.Domain, "bad.example.com")
	p := intel.NewPolicy(intel.ActionBlock, ind, "phishing", "operator:ann", time.Now(), time.Hour)
	events := []siem.Event{
		testEvent(),
		siem.PolicyEvent(siem.KindPolicyCommitted, "node-a", p, "", time.Now()),
		siem.PolicyEvent(siem.KindPolicyEnforced, "node-a", p, "dns", time.Now()),
	}
	for _, e := range events {
		out.Emit(e)
	}
	if err := out.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if out.Emit(events[0]) {
		t.Error("Emit after Close accepted")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	i := 0
	for ; sc.Scan(); i++ {
		var got siem.Event
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if got.ID != events[i].ID || got.Kind != events[i].Kind || got.Indicator != events[i].Indicator || got.Backend != events[i].Backend {
			t.Errorf("line %d = %+v, want %+v", i, got, events[i])
		}
	}
	if i != len(events) {
		t.Fatalf("%d lines, want %d", i, len(events))
	}
}

func TestEmitDropsWhenFull(t *testing.T) {
	block := make(chan struct{})
	out := siem.New([]siem.Sink{blockingSink{block}}, 1, nil)
	out.Start(t.Context())
	n := 0
	for range 10 {
		if out.Emit(testEvent()) {
			n++
		}
	}
	close(block)
	out.Close(t.Context())
	st := out.Stats()
	if st.Dropped == 0 || st.Emitted+st.Dropped != 10 || uint64(n) != st.Emitted {
		t.Errorf("stats %+v after 10 emits (%d accepted)", st, n)
	}
}

type blockingSink struct{ c chan struct{} }

func (b blockingSink) Name() string { return "blocking" }
func (b blockingSink) Write(ctx context.Context, e siem.Event) error {
	select {
	case <-b.c:
	case <-ctx.Done():
	}
	return nil
}
func (b blockingSink) Close() error { return nil }

// memSink records what it is given.
type memSink struct {
	mu     sync.Mutex
	ids    []string
	closed bool
}

func (m *memSink) Name() string { return "mem" }
func (m *memSink) Write(_ context.Context, e siem.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids = append(m.ids, e.ID)
	return nil
}
func (m *memSink) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
func (m *memSink) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ids)
}

// startedSink records the context it was started with.
type startedSink struct {
	memSink
	ctx chan context.Context
}

func (s *startedSink) Start(ctx context.Context) { s.ctx <- ctx }

var _ siem.Starter = (*startedSink)(nil)

// Nothing is written before Start; what waited is written after it, and
// the end of Start's context stops intake and drains the queue.
func TestStartAndContextEnd(t *testing.T) {
	sink := &startedSink{ctx: make(chan context.Context, 1)}
	out := siem.New([]siem.Sink{sink}, 0, nil)
	for range 3 {
		out.Emit(testEvent())
	}
	if sink.count() != 0 {
		t.Fatal("written before Start")
	}
	ctx, cancel := context.WithCancel(t.Context())
	out.Start(ctx)
	out.Start(ctx) // idempotent
	select {
	case got := <-sink.ctx:
		if got != ctx {
			t.Error("the sink was started with another context")
		}
	default:
		t.Fatal("Start did not start the sink")
	}
	cancel()
	deadline := time.Now().Add(30 * time.Second)
	for out.Emit(testEvent()) {
		if time.Now().After(deadline) {
			t.Fatal("intake still open after the context ended")
		}
		time.Sleep(time.Millisecond)
	}
	if err := out.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := out.Stats()
	if sink.count() != int(st.Emitted) || st.Written != st.Emitted || st.Emitted < 3 {
		t.Errorf("wrote %d of %+v", sink.count(), st)
	}
	if !sink.closed {
		t.Error("sink not closed")
	}
}

// Close without Start neither hangs nor writes; it closes the sinks.
func TestCloseWithoutStart(t *testing.T) {
	sink := &memSink{}
	out := siem.New([]siem.Sink{sink}, 0, nil)
	out.Emit(testEvent())
	if err := out.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	out.Start(t.Context()) // after Close: nothing
	if sink.count() != 0 || !sink.closed {
		t.Errorf("wrote %d, closed %v", sink.count(), sink.closed)
	}
}
