package admin

// Dashboard sessions: a browser signs in once with an API token and is
// then known by a session cookie. The session carries the token's ID;
// every request made with it is authorized by the route table exactly as
// the token would be, after the token is read again (a revoked token ends
// its sessions, a changed role takes effect at once). A state-changing
// request made with a session also carries the session's CSRF token in
// X-CSRF-Token.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/meshward/meshward/store"
)

// Session defaults and bounds.
const (
	// DefaultSessionMaxAge is how long a session lasts at most.
	DefaultSessionMaxAge = 8 * time.Hour
	// DefaultSessionIdle ends a session unused for this long.
	DefaultSessionIdle = 30 * time.Minute
	// DefaultMaxSessions bounds the sessions held at once; signing in
	// when it is reached ends the least recently used one.
	DefaultMaxSessions = 1024

	// SessionCookie is the session cookie's name.
	SessionCookie = "meshward_session"
	// CSRFHeader carries a session's CSRF token on every request that
	// changes something.
	CSRFHeader = "X-CSRF-Token"

	sessionIDBytes = 32 // 256 bits
)

// Why a request made with a session was refused: reasons of
// meshward_admin_auth_failures_total (401) and of
// meshward_admin_dashboard_refused_total.
const (
	authNoSession      = "unknown_session" // a cookie naming no session
	authSessionExpired = "expired_session" // past its absolute or idle limit
	csrfMissing        = "csrf_missing"    // a change without X-CSRF-Token (403)
	csrfMismatch       = "csrf_mismatch"   // a change with the wrong one (403)
	refusedCrossOrigin = "cross_origin"    // a sign-in posted from another origin (403)
	sessionsEvicted    = "session_evicted" // a session ended early to make room
)

var dashboardReasons = [...]string{authNoSession, authSessionExpired, csrfMissing, csrfMismatch, refusedCrossOrigin, sessionsEvicted}

var (
	errNoSession      = errors.New("invalid session: unknown or signed out")
	errSessionExpired = errors.New("invalid session: expired")
)

// csrfError refuses a change made with a session but without its CSRF
// token (403).
type csrfError struct{ reason string }

func (e *csrfError) Error() string {
	if e.reason == csrfMissing {
		return "missing " + CSRFHeader + " header: a change made with a session cookie needs the session's CSRF token"
	}
	return "wrong " + CSRFHeader + " header for this session"
}

// SessionOptions bound the dashboard's sessions; zero fields take the
// defaults.
type SessionOptions struct {
	MaxAge time.Duration
	Idle   time.Duration
	Max    int
}

func (o SessionOptions) withDefaults() SessionOptions {
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultSessionMaxAge
	}
	if o.Idle <= 0 {
		o.Idle = DefaultSessionIdle
	}
	if o.Max <= 0 {
		o.Max = DefaultMaxSessions
	}
	return o
}

// session is one signed-in browser.
type session struct {
	key     [sha256.Size]byte // SHA-256 of the cookie's value
	csrf    string
	tokenID string
	created time.Time
	used    time.Time
}

// sessions holds the live sessions, bounded. It is keyed by the SHA-256
// of the cookie value, so that looking one up compares no secret byte by
// byte.
type sessions struct {
	opts SessionOptions
	mu   sync.Mutex
	m    map[[sha256.Size]byte]*session
}

func newSessions(o SessionOptions) *sessions {
	return &sessions{opts: o.withDefaults(), m: make(map[[sha256.Size]byte]*session)}
}

// create starts a session for tokenID at now and returns the cookie value
// and the session; evicted is how many sessions were ended to make room
// (0 or 1).
func (ss *sessions) create(tokenID string, now time.Time) (cookie string, s *session, evicted int, err error) {
	raw := make([]byte, sessionIDBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, 0, fmt.Errorf("new session: %w", err)
	}
	csrf := make([]byte, sessionIDBytes)
	if _, err := rand.Read(csrf); err != nil {
		return "", nil, 0, fmt.Errorf("new session: %w", err)
	}
	cookie = hex.EncodeToString(raw)
	s = &session{key: sha256.Sum256([]byte(cookie)), csrf: hex.EncodeToString(csrf), tokenID: tokenID, created: now, used: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= ss.opts.Max {
		ss.sweep(now)
	}
	if len(ss.m) >= ss.opts.Max {
		var lru *session
		for _, o := range ss.m {
			if lru == nil || o.used.Before(lru.used) {
				lru = o
			}
		}
		delete(ss.m, lru.key)
		evicted = 1
	}
	ss.m[s.key] = s
	return cookie, s, evicted, nil
}

// expired reports whether s has passed its limits at now.
func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.created) >= ss.opts.MaxAge || now.Sub(s.used) >= ss.opts.Idle
}

// sweep drops the expired sessions; ss.mu is held.
func (ss *sessions) sweep(now time.Time) {
	for k, s := range ss.m {
		if ss.expired(s, now) {
			delete(ss.m, k)
		}
	}
}

// use returns a copy of the session of cookie at now, marking it used, or
// errNoSession or errSessionExpired (an expired session is dropped).
func (ss *sessions) use(cookie string, now time.Time) (session, error) {
	key := sha256.Sum256([]byte(cookie))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[key]
	if !ok {
		return session{}, errNoSession
	}
	if ss.expired(s, now) {
		delete(ss.m, key)
		return session{}, errSessionExpired
	}
	s.used = now
	return *s, nil
}

// end drops the session of cookie; it reports whether there was one.
func (ss *sessions) end(cookie string) bool {
	key := sha256.Sum256([]byte(cookie))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.m[key]
	delete(ss.m, key)
	return ok
}

// endToken drops every session of tokenID and returns how many it did.
func (ss *sessions) endToken(tokenID string) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for k, s := range ss.m {
		if s.tokenID == tokenID {
			delete(ss.m, k)
			n++
		}
	}
	return n
}

// len is the number of sessions held.
func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// changes reports whether a request with method may change something and
// so needs the CSRF token.
func changes(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// checkCSRF compares the request's CSRF header with the session's in
// constant time.
func checkCSRF(r *http.Request, s session) error {
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		return &csrfError{reason: csrfMissing}
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
		return &csrfError{reason: csrfMismatch}
	}
	return nil
}

// sessionCookie returns the value of r's session cookie, or "".
func sessionCookie(r *http.Request) string {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// authenticateRequest returns who made r: the holder of its bearer token
// or, with none, of its session cookie's session. It returns the bearer
// token ("" for a session) for authFailed, and a *csrfError for a change
// made with a session without its CSRF token.
func (s *Server) authenticateRequest(r *http.Request) (caller, string, error) {
	tok := bearer(r)
	cookie := sessionCookie(r)
	if tok != "" || cookie == "" {
		who, err := s.authenticate(tok)
		return who, tok, err
	}
	now := s.now()
	sess, err := s.sessions.use(cookie, now)
	if err != nil {
		return caller{}, "", err
	}
	who, err := s.tokenHolder(sess.tokenID)
	if err != nil {
		if errors.Is(err, errUnknownToken) {
			s.sessions.endToken(sess.tokenID) // revoked: its sessions end
		}
		return caller{}, "", err
	}
	if changes(r.Method) {
		if err := checkCSRF(r, sess); err != nil {
			return who, "", err
		}
	}
	return who, "", nil
}

// tokenHolder returns the holder of the token with this ID, read again
// from the store.
func (s *Server) tokenHolder(id string) (caller, error) {
	rec, err := s.tokenStore.Token(id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return caller{}, errUnknownToken
		}
		return caller{}, err
	}
	role := Role(rec.Role)
	if !role.Valid() {
		return caller{}, fmt.Errorf("token %s has unknown role %q", id, rec.Role)
	}
	return caller{id: rec.ID, name: rec.Name, role: role}, nil
}
