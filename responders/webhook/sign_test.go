package webhook_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshward/meshward/responders/webhook"
)

// delivery is one request as a receiver saw it.
type delivery struct {
	timestamp, sig, id string
	body               []byte
}

// recorder accepts every request and keeps it.
type recorder struct {
	mu  sync.Mutex
	got []delivery
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.got = append(r.got, delivery{req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature), req.Header.Get(webhook.HeaderEventID), body})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *recorder) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// TestSignatureCoversTimestamp: a delivery carries the time it was sent,
// and the signature verifies over that time and the body, and over
// nothing else.
func TestSignatureCoversTimestamp(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	w := startHook(t, openStore(t, t.TempDir()), srv.URL)
	before := time.Now()
	if err := w.Write(t.Context(), event(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delivery", func() bool { return len(rec.deliveries()) == 1 })
	d := rec.deliveries()[0]
	secs, err := strconv.ParseInt(d.timestamp, 10, 64)
	if err != nil {
		t.Fatalf("timestamp header %q: %v", d.timestamp, err)
	}
	if at := time.Unix(secs, 0); at.Before(before.Truncate(time.Second)) || at.After(time.Now()) {
		t.Fatalf("timestamp %s, want the time of sending (after %s)", at, before)
	}
	if err := webhook.Verify(secret, d.timestamp, d.body, d.sig, time.Now(), time.Minute); err != nil {
		t.Fatalf("delivery does not verify: %v", err)
	}
	if d.sig != webhook.Sign(secret, d.timestamp, d.body) || d.sig[:3] != "v1=" {
		t.Fatalf("signature header %q, want v1= and the MAC of timestamp and body", d.sig)
	}
	later := strconv.FormatInt(secs+1, 10)
	if err := webhook.Verify(secret, later, d.body, d.sig, time.Now(), time.Minute); !errors.Is(err, webhook.ErrSignature) {
		t.Fatalf("signature verified under another timestamp: %v", err)
	}
}

// TestReplayRefused: a captured delivery sent again after the receiver's
// maximum age is refused; so is the same body with a fresh timestamp
// (which the replayer cannot sign) or with any byte changed.
func TestReplayRefused(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	w := startHook(t, openStore(t, t.TempDir()), srv.URL)
	if err := w.Write(t.Context(), event(2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delivery", func() bool { return len(rec.deliveries()) == 1 })
	d := rec.deliveries()[0]
	const maxAge = 5 * time.Minute
	replayAt := time.Now().Add(maxAge + time.Minute)
	if err := webhook.Verify(secret, d.timestamp, d.body, d.sig, replayAt, maxAge); !errors.Is(err, webhook.ErrStale) {
		t.Fatalf("replay after the maximum age: %v, want ErrStale", err)
	}
	fresh := strconv.FormatInt(replayAt.Unix(), 10)
	if err := webhook.Verify(secret, fresh, d.body, d.sig, replayAt, maxAge); !errors.Is(err, webhook.ErrSignature) {
		t.Fatalf("replay with a fresh timestamp: %v, want ErrSignature", err)
	}
	tampered := append([]byte(nil), d.body...)
	tampered[len(tampered)/2] ^= 1
	if err := webhook.Verify(secret, d.timestamp, tampered, d.sig, time.Now(), maxAge); !errors.Is(err, webhook.ErrSignature) {
		t.Fatalf("tampered body: %v, want ErrSignature", err)
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"e1"}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := webhook.Sign(secret, ts, body)
	stamp := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	tests := []struct {
		name      string
		timestamp string
		sig       string // "" with a timestamp: sign it
		maxAge    time.Duration
		want      error
	}{
		{"fresh", ts, sig, time.Minute, nil},
		{"at the maximum age", stamp(-time.Minute), "", time.Minute, nil},
		{"past the maximum age", stamp(-time.Minute - time.Second), "", time.Minute, webhook.ErrStale},
		{"far ahead", stamp(time.Hour), "", time.Minute, webhook.ErrStale},
		{"default maximum age", stamp(-4 * time.Minute), "", 0, nil},
		{"past the default maximum age", stamp(-6 * time.Minute), "", 0, webhook.ErrStale},
		{"other secret", ts, webhook.Sign([]byte("another-secret-of-16+"), ts, body), time.Minute, webhook.ErrSignature},
		{"body alone signed (old scheme)", ts, "sha256=" + webhook.Sign(secret, "", body)[3:], time.Minute, webhook.ErrSignature},
		{"no signature", ts, "-", time.Minute, webhook.ErrSignature},
		{"no timestamp", "", sig, time.Minute, webhook.ErrTimestamp},
		{"signed timestamp with a sign", "+" + ts, webhook.Sign(secret, "+"+ts, body), time.Minute, webhook.ErrTimestamp},
		{"fractional timestamp", ts + ".5", webhook.Sign(secret, ts+".5", body), time.Minute, webhook.ErrTimestamp},
		{"overflowing timestamp", "9999999999999999999", webhook.Sign(secret, "9999999999999999999", body), time.Minute, webhook.ErrTimestamp},
		{"too long timestamp", "00000000000000000001", sig, time.Minute, webhook.ErrTimestamp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig := tc.sig
			switch sig {
			case "":
				sig = webhook.Sign(secret, tc.timestamp, body)
			case "-":
				sig = ""
			}
			err := webhook.Verify(secret, tc.timestamp, body, sig, now, tc.maxAge)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestRedirectNotFollowed: a receiver that redirects to another server
// gets the event retried with backoff and counted; the other server never
// sees a request, whether the webhook built its client or was given one.
func TestRedirectNotFollowed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{{"default client", nil}, {"caller's client", &http.Client{}}} {
		t.Run(tc.name, func(t *testing.T) {
			var elsewhere atomic.Int64
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				elsewhere.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer other.Close()
			var asked atomic.Int64
			redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				asked.Add(1)
				http.Redirect(w, r, other.URL+"/hook", http.StatusTemporaryRedirect)
			}))
			defer redirecting.Close()

			q, err := openStore(t, t.TempDir()).Queue("webhook")
			if err != nil {
				t.Fatal(err)
			}
			w, err := webhook.New(webhook.Config{URL: redirecting.URL, Secret: secret, Client: tc.client,
				MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}, q)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.Start(t.Context())
			if err := w.Write(t.Context(), event(3)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "three redirected attempts", func() bool {
				st := w.Stats()
				return st.Redirects >= 3 || elsewhere.Load() > 0 || st.Delivered+st.Rejected > 0
			})
			w.Close()
			st := w.Stats()
			if n := elsewhere.Load(); n != 0 {
				t.Fatalf("the redirect target saw %d requests", n)
			}
			if st.Delivered != 0 || st.Rejected != 0 || st.Retries < st.Redirects || uint64(asked.Load()) != st.Redirects {
				t.Fatalf("stats %+v after %d attempts: want redirects counted as retried failures", st, asked.Load())
			}
			if tc.client != nil && tc.client.CheckRedirect != nil {
				t.Fatal("the caller's client was changed")
			}
			ids, _, err := q.Peek(10)
			if err != nil || len(ids) != 1 {
				t.Fatalf("queue holds %v (%v), want the undelivered event", ids, err)
			}
		})
	}
}
