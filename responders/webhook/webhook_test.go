package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/responders/webhook"
	"github.com/meshward/meshward/store"
)

var secret = []byte("0123456789abcdef-test-secret")

// receiver is a SOAR stand-in that refuses the first down requests.
type receiver struct {
	mu       sync.Mutex
	down     int
	requests int
	got      map[string]int // accepted deliveries per event ID
	order    []string
	bad      []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if r.requests <= r.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	id := req.Header.Get(webhook.HeaderEventID)
	if err := webhook.Verify(secret, req.Header.Get(webhook.HeaderTimestamp), body, req.Header.Get(webhook.HeaderSignature), time.Now(), time.Minute); err != nil {
		r.bad = append(r.bad, id+": "+err.Error())
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var e siem.Event
	if err := json.Unmarshal(body, &e); err != nil || e.ID != id {
		r.bad = append(r.bad, fmt.Sprintf("%s: body %q", id, body))
	}
	r.got[id]++
	r.order = append(r.order, id)
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(store.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newHook(t *testing.T, s *store.Store, url string) *webhook.Webhook {
	t.Helper()
	q, err := s.Queue("webhook")
	if err != nil {
		t.Fatal(err)
	}
	w, err := webhook.New(webhook.Config{URL: url, Secret: secret, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, q)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// startHook is newHook, delivering until the test ends or Close.
func startHook(t *testing.T, s *store.Store, url string) *webhook.Webhook {
	t.Helper()
	w := newHook(t, s, url)
	w.Start(t.Context())
	return w
}

func event(i int) siem.Event {
	ind, _ := intel.NewIndicator(intel.IPv4, fmt.Sprintf("203.0.113.%d", i))
	p := intel.NewPolicy(intel.ActionBlock, ind, "test", "operator:test", time.Now(), time.Hour)
	return siem.PolicyEvent(siem.KindPolicyEnforced, "node-a", p, "nftables", time.Now())
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDeliveryAcrossOutageAndRestart: the receiver is down for the first
// requests, the webhook is restarted on the same on-disk store halfway,
// and every event still arrives exactly once, in order, correctly signed.
func TestDeliveryAcrossOutageAndRestart(t *testing.T) {
	rcv := &receiver{down: 7, got: map[string]int{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	dir := t.TempDir()

	s := openStore(t, dir)
	w := startHook(t, s, srv.URL)
	var want []string
	for i := range 20 {
		e := event(i)
		want = append(want, e.ID)
		if err := w.Write(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "some deliveries", func() bool { return rcv.count() >= 3 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if st := w.Stats(); st.Retries == 0 {
		t.Errorf("no retries counted while the receiver was down: %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: a new store handle on the same directory.
	s = openStore(t, dir)
	defer s.Close()
	w = startHook(t, s, srv.URL)
	defer w.Close()
	for i := 20; i < 30; i++ {
		e := event(i)
		want = append(want, e.ID)
		if err := w.Write(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all deliveries", func() bool { return rcv.count() >= len(want) })
	w.Close()

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bad) > 0 {
		t.Fatalf("bad deliveries: %v", rcv.bad)
	}
	for _, id := range want {
		if rcv.got[id] != 1 {
			t.Errorf("event %s delivered %d times, want once", id, rcv.got[id])
		}
	}
	if len(rcv.order) != len(want) {
		t.Fatalf("%d deliveries, want %d", len(rcv.order), len(want))
	}
	for i := range want {
		if rcv.order[i] != want[i] {
			t.Fatalf("delivery %d is %s, want %s (in order)", i, rcv.order[i], want[i])
		}
	}
	q, _ := s.Queue("webhook")
	if n, err := q.Len(); err != nil || n != 0 {
		t.Errorf("queue holds %d (%v) after delivery, want 0", n, err)
	}
}

func TestRejectedEventIsDroppedAndCounted(t *testing.T) {
	var mu sync.Mutex
	seen := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen++
		if seen == 1 {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
	}))
	defer srv.Close()
	s, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := startHook(t, s, srv.URL)
	defer w.Close()
	w.Write(t.Context(), event(1))
	w.Write(t.Context(), event(2))
	waitFor(t, "both handled", func() bool { st := w.Stats(); return st.Rejected+st.Delivered == 2 })
	if st := w.Stats(); st.Rejected != 1 || st.Delivered != 1 {
		t.Errorf("stats %+v, want one rejected, one delivered", st)
	}
}

func TestQueueSemantics(t *testing.T) {
	s, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := s.Queue("a")
	other, _ := s.Queue("ab")
	for _, id := range []string{"x", "y", "x", "z"} {
		if err := q.Enqueue(id, []byte("body-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	other.Enqueue("w", nil)
	ids, bodies, err := q.Peek(10)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != "[x y z]" || string(bodies[1]) != "body-y" {
		t.Fatalf("Peek = %v %q, want [x y z] in order, each once", ids, bodies)
	}
	if err := q.Ack("y"); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack("absent"); err != nil {
		t.Fatalf("Ack of an absent id: %v", err)
	}
	ids, _, _ = q.Peek(1)
	if fmt.Sprint(ids) != "[x]" {
		t.Fatalf("Peek(1) = %v", ids)
	}
	if n, _ := q.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	if ids, _, _ := other.Peek(10); fmt.Sprint(ids) != "[w]" {
		t.Fatalf("other queue = %v", ids)
	}
	s.Close()
	if err := q.Enqueue("late", nil); err == nil {
		t.Fatal("Enqueue after Close succeeded")
	}
}

func TestConfigValidation(t *testing.T) {
	s, _ := store.Open(store.Options{InMemory: true})
	defer s.Close()
	q, _ := s.Queue("v")
	for _, c := range []webhook.Config{
		{URL: "ftp://x", Secret: secret},
		{URL: "http://x", Secret: []byte("short")},
		{URL: "http://x", Secret: secret, MinBackoff: time.Second, MaxBackoff: time.Millisecond},
	} {
		if _, err := webhook.New(c, q); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

// A webhook delivers nothing until Start; what it queued before is
// delivered by the next one started on the same store.
func TestDeliveryWaitsForStart(t *testing.T) {
	rcv := &receiver{got: map[string]int{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	s := openStore(t, t.TempDir())
	defer s.Close()
	w := newHook(t, s, srv.URL)
	for i := range 3 {
		if err := w.Write(t.Context(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Start(t.Context()) // after Close: nothing
	if n := rcv.count(); n != 0 {
		t.Fatalf("%d deliveries without Start", n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	w = newHook(t, s, srv.URL)
	w.Start(ctx)
	waitFor(t, "the queued events", func() bool { return rcv.count() == 3 })
	cancel() // the context's end stops delivery; Close still waits
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
