package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/meshward/meshward/internal/routine"
	"github.com/meshward/meshward/responders/siem"
)

// Header names.
const (
	HeaderSignature = "X-Meshward-Signature" // "v1=" + hex HMAC-SHA256 of timestamp "." body
	HeaderTimestamp = "X-Meshward-Timestamp" // Unix seconds of the attempt, decimal
	HeaderEventID   = "X-Meshward-Event-Id"
)

// DefaultMaxAge is the age beyond which Verify refuses a delivery when
// the receiver gives none.
const DefaultMaxAge = 5 * time.Minute

// Errors of Verify.
var (
	// ErrSignature: the signature header is missing, not "v1=<hex>", or
	// not the MAC of the timestamp and the body under the secret.
	ErrSignature = errors.New("webhook signature invalid")
	// ErrTimestamp: the timestamp header is not decimal Unix seconds.
	ErrTimestamp = errors.New("webhook timestamp malformed")
	// ErrStale: the timestamp lies more than the maximum age before, or
	// after, the receiver's clock (a replay, or clocks far apart).
	ErrStale = errors.New("webhook delivery outside its maximum age")
)

// Queue is the durable queue events wait in. ids[i] and bodies[i] of Peek
// belong together, oldest first. Enqueue of an id already queued must do
// nothing; Ack of an absent id must not fail.
type Queue interface {
	Enqueue(id string, body []byte) error
	Peek(n int) (ids []string, bodies [][]byte, err error)
	Ack(id string) error
}

// Config configures a Webhook.
type Config struct {
	URL    string // http or https endpoint
	Secret []byte // HMAC key; required
	// Timeout bounds one POST (default 10s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the delay between retries (defaults
	// 500ms and 1m); the delay doubles after each failure.
	MinBackoff, MaxBackoff time.Duration
	// Client sends the requests (default: a client with Timeout).
	Client *http.Client
	Logger *slog.Logger
}

func (c *Config) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook url %q: want an absolute http or https URL", c.URL)
	}
	if len(c.Secret) < 16 {
		return fmt.Errorf("webhook secret is %d bytes, want at least 16", len(c.Secret))
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = time.Minute
	}
	if c.Timeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("webhook timeout %v, backoff %v..%v: want positive and min <= max", c.Timeout, c.MinBackoff, c.MaxBackoff)
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: c.Timeout}
	} else {
		cl := *c.Client // the caller's client, unchanged for its other uses
		c.Client = &cl
	}
	c.Client.CheckRedirect = refuseRedirect
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Stats counts a webhook's work.
type Stats struct {
	Queued    uint64 // events written to the queue
	Delivered uint64 // events the receiver accepted (2xx)
	Retries   uint64 // failed attempts that will be retried (redirects included)
	Redirects uint64 // attempts answered with a 3xx, never followed
	Rejected  uint64 // events dropped because the receiver refused them for good
	Errors    uint64 // queue errors
}

// Webhook is a siem.Sink that queues events durably and, from Start
// until Close, delivers them in the background.
type Webhook struct {
	cfg   Config
	queue Queue
	wake  chan struct{}

	bg routine.Loop // the delivery loop, from Start

	queued, delivered, retries, redirects, rejected, qerrs atomic.Uint64
}

var (
	_ siem.Sink    = (*Webhook)(nil)
	_ siem.Starter = (*Webhook)(nil)
)

// New validates cfg and returns a webhook that queues into q. Delivery
// begins with Start (siem.Output.Start calls it); events queued by an
// earlier run are sent first.
func New(cfg Config, q Queue) (*Webhook, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if q == nil {
		return nil, errors.New("webhook: queue is nil")
	}
	return &Webhook{cfg: cfg, queue: q, wake: make(chan struct{}, 1)}, nil
}

// Start delivers what the queue holds, in the background, until ctx ends
// or Close is called. Calling it again, or after Close, does nothing.
func (w *Webhook) Start(ctx context.Context) {
	w.bg.Start(ctx, w.run)
}

// Name implements siem.Sink.
func (w *Webhook) Name() string { return "webhook" }

// Write implements siem.Sink: it queues e durably and returns; delivery
// happens later.
func (w *Webhook) Write(ctx context.Context, e siem.Event) error {
	if e.ID == "" {
		return errors.New("webhook: event has no ID")
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("webhook: encode event %s: %w", e.ID, err)
	}
	return w.Enqueue(e.ID, body)
}

// Enqueue queues a raw JSON body under id.
func (w *Webhook) Enqueue(id string, body []byte) error {
	if err := w.queue.Enqueue(id, body); err != nil {
		w.qerrs.Add(1)
		return fmt.Errorf("webhook: %w", err)
	}
	w.queued.Add(1)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// Stats returns the counters.
func (w *Webhook) Stats() Stats {
	return Stats{Queued: w.queued.Load(), Delivered: w.delivered.Load(), Retries: w.retries.Load(),
		Redirects: w.redirects.Load(), Rejected: w.rejected.Load(), Errors: w.qerrs.Load()}
}

// Close stops delivery, waiting for a request in flight (whose outcome is
// recorded). Undelivered events stay queued. Idempotent; always nil.
func (w *Webhook) Close() error {
	w.bg.Close()
	return nil
}

// refuseRedirect makes the client hand back a 3xx instead of following it.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Sign returns the signature header value for body sent at timestamp (the
// X-Meshward-Timestamp header's value): "v1=" and the hex HMAC-SHA256,
// under secret, of timestamp, ".", body.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery for a receiver: timestamp and sig are the
// X-Meshward-Timestamp and X-Meshward-Signature headers, body the exact
// request body, now the receiver's clock. It refuses a malformed
// timestamp (ErrTimestamp), a signature that is not the MAC of timestamp
// and body (ErrSignature), and a timestamp more than maxAge before or
// after now (ErrStale); maxAge <= 0 means DefaultMaxAge. The signature is
// compared in constant time and checked before the age, so a forgery is
// reported as one whatever its timestamp.
func Verify(secret []byte, timestamp string, body []byte, sig string, now time.Time, maxAge time.Duration) error {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if timestamp == "" || len(timestamp) > 19 {
		return fmt.Errorf("%w: %q", ErrTimestamp, timestamp)
	}
	var secs int64
	for i := 0; i < len(timestamp); i++ {
		c := timestamp[i]
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: %q", ErrTimestamp, timestamp)
		}
		secs = secs*10 + int64(c-'0')
	}
	if secs < 0 { // 19 digits may overflow
		return fmt.Errorf("%w: %q", ErrTimestamp, timestamp)
	}
	if !hmac.Equal([]byte(sig), []byte(Sign(secret, timestamp, body))) {
		return ErrSignature
	}
	at := time.Unix(secs, 0)
	if d := now.Sub(at); d > maxAge || d < -maxAge {
		return fmt.Errorf("%w: sent at %s, %s from the receiver's clock %s (limit %s)",
			ErrStale, at.UTC().Format(time.RFC3339), d.Round(time.Second), now.UTC().Format(time.RFC3339), maxAge)
	}
	return nil
}

const peekBatch = 64

func (w *Webhook) run(ctx context.Context) {
	backoff := time.Duration(0)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		ids, bodies, err := w.queue.Peek(peekBatch)
		if err != nil {
			w.qerrs.Add(1)
			w.cfg.Logger.Warn("webhook queue", "err", err)
		}
		failed := err != nil
		for i := 0; i < len(ids) && !failed && ctx.Err() == nil; i++ {
			switch w.deliver(ctx, ids[i], bodies[i]) {
			case outcomeRetry:
				failed = true
				continue
			case outcomeRejected:
				w.rejected.Add(1)
			case outcomeDelivered:
				w.delivered.Add(1)
			}
			if err := w.queue.Ack(ids[i]); err != nil {
				w.qerrs.Add(1)
				w.cfg.Logger.Warn("webhook ack", "id", ids[i], "err", err)
				failed = true
			}
			backoff = 0
		}
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		switch {
		case failed:
			backoff = min(max(2*backoff, w.cfg.MinBackoff), w.cfg.MaxBackoff)
			wait = backoff
		case len(ids) == peekBatch:
			continue // more to send
		default:
			wait = time.Hour // idle until Enqueue wakes us
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.wake:
			if failed {
				// Keep backing off; a new event does not heal the receiver.
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
		}
	}
}

type outcome int

const (
	outcomeDelivered outcome = iota
	outcomeRetry
	outcomeRejected
)

// deliver POSTs one event. The request is not tied to ctx: Close waits for
// it (bounded by the client timeout), so that its outcome is acknowledged
// and a receiver that accepted it does not see it again.
func (w *Webhook) deliver(ctx context.Context, id string, body []byte) outcome {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		w.cfg.Logger.Error("webhook request", "err", err)
		return outcomeRetry
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "meshward-webhook")
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set(HeaderEventID, id)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.cfg.Secret, ts, body))
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		w.retries.Add(1)
		w.cfg.Logger.Debug("webhook delivery failed", "id", id, "err", err)
		return outcomeRetry
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return outcomeDelivered
	case c >= 300 && c < 400:
		w.redirects.Add(1)
		w.retries.Add(1)
		w.cfg.Logger.Warn("webhook receiver redirects, not followed; will retry", "id", id, "status", c,
			"location", resp.Header.Get("Location"))
		return outcomeRetry
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		w.retries.Add(1)
		w.cfg.Logger.Debug("webhook delivery refused, will retry", "id", id, "status", c)
		return outcomeRetry
	default:
		w.cfg.Logger.Warn("webhook event rejected", "id", id, "status", c)
		return outcomeRejected
	}
}
