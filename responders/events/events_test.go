package events_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
	"github.com/meshward/meshward/responders/events"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/responders/webhook"
)

func TestDefaultConfig(t *testing.T) {
	c := events.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	out, err := events.Build(c, events.Deps{})
	if err != nil || out != nil {
		t.Fatalf("defaults built %v, %v; want no output", out, err)
	}
}

func TestValidateNamesEveryField(t *testing.T) {
	c := events.DefaultConfig()
	c.Syslog = []events.SyslogSinkConfig{{Network: "tcp", Address: "siem:6514"}, {Network: "icmp", Address: "nope", Facility: 24}}
	c.QueueSize = 0
	c.Webhook = events.WebhookConfig{URL: "ftp://x", MinBackoff: time.Second, MaxBackoff: time.Millisecond, Timeout: time.Second}
	var got []string
	for _, fe := range confcheck.Fields(c.Validate()) {
		got = append(got, fe.Field)
	}
	want := []string{"syslog[1].network", "syslog[1].address", "syslog[1].facility", "queue_size", "webhook.url", "webhook.secret_file", "webhook.timeout"}
	if !slices.Equal(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
}

// memQueue is an in-memory webhook.Queue.
type memQueue struct {
	mu     sync.Mutex
	ids    []string
	bodies [][]byte
}

func (q *memQueue) Enqueue(id string, body []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if slices.Contains(q.ids, id) {
		return nil
	}
	q.ids, q.bodies = append(q.ids, id), append(q.bodies, body)
	return nil
}

func (q *memQueue) Peek(n int) ([]string, [][]byte, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.ids))
	return slices.Clone(q.ids[:n]), slices.Clone(q.bodies[:n]), nil
}

func (q *memQueue) Ack(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.ids, id); i >= 0 {
		q.ids, q.bodies = slices.Delete(q.ids, i, i+1), slices.Delete(q.bodies, i, i+1)
	}
	return nil
}

func TestBuildDeliversToEverySink(t *testing.T) {
	dir := t.TempDir()
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Header.Get(webhook.HeaderEventID) + " " + string(b)
	}))
	defer srv.Close()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := events.DefaultConfig()
	c.JSONLines = filepath.Join(dir, "events.jsonl")
	c.Webhook.URL, c.Webhook.SecretFile = srv.URL, secret
	out, err := events.Build(c, events.Deps{Hostname: "site-a", Version: "test",
		WebhookQueue: func() (webhook.Queue, error) { return &memQueue{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	out.Start(t.Context())
	ind, _ := intel.NewIndicator(intel.IPv4, "203.0.113.7")
	e := siem.PolicyEvent(siem.KindPolicyCommitted, "node-a", intel.NewPolicy(intel.ActionBlock, ind, "", "operator:t", time.Now(), time.Hour), "", time.Now())
	if !out.Emit(e) {
		t.Fatal("Emit refused")
	}
	select {
	case s := <-got:
		if !strings.HasPrefix(s, e.ID+" ") {
			t.Errorf("webhook received %q, want event %s", s, e.ID)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the webhook never delivered")
	}
	if err := out.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.JSONLines)
	if err != nil || !strings.Contains(string(b), e.ID) {
		t.Fatalf("json lines %q (%v) lack the event", b, err)
	}
}

func TestBuildErrorsNameTheField(t *testing.T) {
	c := events.DefaultConfig()
	c.JSONLines = filepath.Join(t.TempDir(), "events.jsonl")
	c.Webhook.URL, c.Webhook.SecretFile = "http://127.0.0.1:1/", filepath.Join(t.TempDir(), "missing")
	if _, err := events.Build(c, events.Deps{}); err == nil || !strings.HasPrefix(err.Error(), "events.webhook.secret_file: ") {
		t.Fatalf("err = %v", err)
	}
	c.Webhook.SecretFile = filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(c.Webhook.SecretFile, []byte("0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	_, err := events.Build(c, events.Deps{WebhookQueue: func() (webhook.Queue, error) { return nil, boom }})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "events.webhook: ") {
		t.Fatalf("err = %v", err)
	}
	c.Syslog = []events.SyslogSinkConfig{{Network: "udp", Address: "bad"}}
	if _, err := events.Build(c, events.Deps{}); err == nil || !strings.HasPrefix(err.Error(), "events.syslog[0]: ") {
		t.Fatalf("err = %v", err)
	}
}
