package admin

// Failed authentications (401): counted by reason, and audited at most
// once a minute per source with the number of failures each entry stands
// for.

import (
	"container/list"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Why a request got 401: the reason label of
// meshward_admin_auth_failures_total (403s are counted as "forbidden").
const (
	authMissing   = "missing_token"   // no bearer token
	authMalformed = "malformed_token" // not mwt_<id>_<secret>
	authUnknown   = "unknown_token"   // no such token ID (never created, or revoked)
	authBadSecret = "bad_secret"      // the ID exists, the secret is wrong
	authError     = "error"           // the token could not be checked (store error, bad record)
)

var authReasons = [...]string{authMissing, authMalformed, authUnknown, authBadSecret, authError, authNoSession, authSessionExpired}

var (
	errUnknownToken = errors.New("invalid token: unknown ID")
	errBadSecret    = errors.New("invalid token: wrong secret")
)

// authFailReason classifies an authenticate error for the bearer tok.
func authFailReason(tok string, err error) string {
	switch {
	case errors.Is(err, errNoSession): // a dashboard session (dashboard_session.go)
		return authNoSession
	case errors.Is(err, errSessionExpired):
		return authSessionExpired
	case tok == "" && errors.Is(err, errUnknownToken):
		return authUnknown // a session whose token was revoked
	case tok == "":
		return authMissing
	case errors.Is(err, errMalformedToken):
		return authMalformed
	case errors.Is(err, errUnknownToken):
		return authUnknown
	case errors.Is(err, errBadSecret):
		return authBadSecret
	}
	return authError
}

// Bounds of the failed-authentication audit.
const (
	// authAuditEvery is the least time between two audit entries of one
	// source.
	authAuditEvery = time.Minute
	// authAuditSources bounds the sources tracked at once; failures from
	// further sources share one entry, under authAuditOverflow.
	authAuditSources  = 256
	authAuditOverflow = "other sources"
	// authAuditTick is how often pending failures are looked at, so that
	// a source that stops still gets its last entry within about
	// authAuditEvery + authAuditTick.
	authAuditTick = 10 * time.Second
)

// authAudit rate-limits the audit entries of failed authentications. A
// source's first failure is audited at once; later ones are counted and
// audited together, at most once per authAuditEvery, in an entry whose
// Count is the number of failures it stands for, so that the entries'
// counts add up to every failure. A source with nothing pending for
// authAuditEvery is forgotten.
type authAudit struct {
	mu      sync.Mutex
	sources map[string]*list.Element // of *failSource
	order   list.List                // of *failSource, least recently audited first
}

type failSource struct {
	key     string
	last    time.Time // when the source's last entry was made
	pending int       // failures since, not in an entry yet
	reasons [len(authReasons)]int
	route   string // the last route tried
}

// fail records a failure of source at now and returns the entries due,
// which the caller writes (outside the lock).
func (a *authAudit) fail(now time.Time, source, reason, route string) []AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sources == nil {
		a.sources = make(map[string]*list.Element)
	}
	out := a.sweep(now, false, nil)
	el, ok := a.sources[source]
	if !ok && len(a.sources) >= authAuditSources {
		source = authAuditOverflow
		el, ok = a.sources[source]
	}
	if !ok {
		el = a.order.PushBack(&failSource{key: source})
		a.sources[source] = el
	}
	fs := el.Value.(*failSource)
	fs.pending++
	for i, r := range authReasons {
		if r == reason {
			fs.reasons[i]++
		}
	}
	fs.route = route
	if fs.last.IsZero() { // a new source: audited at once
		out = append(out, fs.entry(now))
		a.order.MoveToBack(el)
	}
	return out
}

// flush returns the entries due at now; with all, every pending failure's.
func (a *authAudit) flush(now time.Time, all bool) []AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sweep(now, all, nil)
}

// sweep appends to out an entry for each source whose failures are due
// (or, with all, pending) and forgets sources quiet for authAuditEvery.
// The order stays that of the sources' last entries: one audited now
// moves to the back.
func (a *authAudit) sweep(now time.Time, all bool, out []AuditEntry) []AuditEntry {
	for el, n := a.order.Front(), a.order.Len(); el != nil && n > 0; n-- {
		next := el.Next()
		fs := el.Value.(*failSource)
		due := now.Sub(fs.last) >= authAuditEvery
		if !due && !all {
			break // the rest were audited later still
		}
		switch {
		case fs.pending > 0:
			out = append(out, fs.entry(now))
			a.order.MoveToBack(el)
		case due:
			a.order.Remove(el)
			delete(a.sources, fs.key)
		}
		el = next
	}
	return out
}

// entry makes the audit entry of the pending failures and resets them.
func (fs *failSource) entry(now time.Time) AuditEntry {
	var d strings.Builder
	for i, n := range fs.reasons {
		if n > 0 {
			if d.Len() > 0 {
				d.WriteByte(' ')
			}
			d.WriteString(authReasons[i] + "=" + strconv.Itoa(n))
		}
	}
	d.WriteString("; last " + fs.route)
	e := AuditEntry{Time: now.UTC(), Actor: "unauthenticated", Action: "auth.fail", Target: fs.key,
		Detail: d.String(), Result: "denied", Error: "missing or invalid token", Status: http.StatusUnauthorized,
		Count: fs.pending}
	fs.last, fs.pending, fs.reasons = now, 0, [len(authReasons)]int{}
	return e
}

// authFailed counts and audits a 401 for r on route.
func (s *Server) authFailed(r *http.Request, route, tok string, err error) {
	reason := authFailReason(tok, err)
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	s.log.Debug("admin API: unauthenticated request", "route", route, "reason", reason, "err", err)
	for _, e := range s.authAudit.fail(s.now(), s.requestSource(r), reason, route) {
		s.audit(e)
	}
}

// flushAuthFailures writes the failed-authentication entries due now, or
// with all every pending one.
func (s *Server) flushAuthFailures(all bool) {
	for _, e := range s.authAudit.flush(s.now(), all) {
		s.audit(e)
	}
}

// auditAuthFailures writes due failed-authentication entries every
// authAuditTick until ctx ends.
func (s *Server) auditAuthFailures(ctx context.Context) {
	t := time.NewTicker(authAuditTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.flushAuthFailures(false)
		}
	}
}

// requestSource names where a request came from: "unix:<socket>" (every
// local client shares the socket) or "tcp:<remote address>".
func (s *Server) requestSource(r *http.Request) string {
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && la.Network() == "unix" {
		return "unix:" + s.opts.SocketPath
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "tcp:" + host
}
