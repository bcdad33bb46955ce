package admin

// The web dashboard: static pages embedded in the binary (web/), served
// under /ui/ on every listener of the API (the Unix socket, HTTPS, and
// the optional loopback plain-HTTP listener), with sign-in and sign-out.
// The pages call the API's own routes (/v1/...) with the session cookie
// and the CSRF header: one route table, one authorization path.

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

//go:embed web
var webFS embed.FS

// Bounds of the dashboard's own requests.
const maxLoginBody = 4 << 10

// contentSecurityPolicy allows the pages to load only their own scripts,
// styles and images, and to talk only to their own origin; no inline
// script, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type dashboardMetrics struct {
	refused  *prometheus.CounterVec
	sessions prometheus.GaugeFunc
	logins   prometheus.Counter
}

func newDashboardMetrics(reg prometheus.Registerer, ss *sessions) *dashboardMetrics {
	m := &dashboardMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshward", Subsystem: "admin", Name: "dashboard_refused_total",
			Help: "Dashboard session requests refused or sessions ended early, by reason (unknown_session, expired_session, csrf_missing, csrf_mismatch, cross_origin, session_evicted).",
		}, []string{"reason"}),
		sessions: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "meshward", Subsystem: "admin", Name: "dashboard_sessions",
			Help: "Dashboard sessions held (some may have expired unseen).",
		}, func() float64 { return float64(ss.len()) }),
		logins: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshward", Subsystem: "admin", Name: "dashboard_logins_total",
			Help: "Dashboard sign-ins that started a session.",
		}),
	}
	for _, r := range dashboardReasons {
		m.refused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.refused, m.sessions, m.logins)
	}
	return m
}

// topHandler serves the dashboard beside the API and sets the security
// headers of every answer.
func (s *Server) topHandler(api http.Handler) http.Handler {
	web, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusSeeOther))
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", http.FileServerFS(web)))
	mux.HandleFunc("POST /ui/login", s.uiLogin)
	mux.HandleFunc("POST /ui/logout", s.uiLogout)
	mux.HandleFunc("GET /ui/session", s.uiSession)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if strings.HasPrefix(r.URL.Path, "/ui/") {
			h.Set("Cache-Control", "no-cache")
		}
		mux.ServeHTTP(w, r)
	})
}

// SessionInfo is what GET /ui/session and POST /ui/login answer: who the
// session is, and the CSRF token its changes must carry.
type SessionInfo struct {
	Node      string    `json:"node"`
	Name      string    `json:"name"`
	TokenID   string    `json:"token_id"`
	Role      Role      `json:"role"`
	CSRFToken string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) sessionInfo(who caller, sess session) SessionInfo {
	return SessionInfo{Node: s.statusSvc.ID(), Name: who.name, TokenID: who.id, Role: who.role, CSRFToken: sess.csrf,
		ExpiresAt: sess.created.Add(s.sessions.opts.MaxAge).UTC()}
}

// sameOrigin reports whether r, if it names its origin, comes from the
// host it was sent to.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") == "" || r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// uiLogin signs in with an API token posted as the form field "token".
func (s *Server) uiLogin(w http.ResponseWriter, r *http.Request) {
	const route = "POST /ui/login"
	if !sameOrigin(r) {
		s.dash.refused.WithLabelValues(refusedCrossOrigin).Inc()
		s.writeError(w, route, http.StatusForbidden, "forbidden", "sign-in from another origin")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		s.metrics.rejections.WithLabelValues(reasonBodyTooLarge).Inc()
		s.writeError(w, route, http.StatusBadRequest, "bad_request", "sign-in form: "+err.Error())
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	who, err := s.authenticate(tok)
	if err != nil {
		s.authFailed(r, route, tok, err)
		s.writeError(w, route, http.StatusUnauthorized, "unauthorized", "missing or invalid token")
		return
	}
	now := s.now()
	cookie, sess, evicted, err := s.sessions.create(who.id, now)
	if err != nil {
		s.writeError(w, route, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	if evicted > 0 {
		s.dash.refused.WithLabelValues(sessionsEvicted).Add(float64(evicted))
	}
	s.dash.logins.Inc()
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: cookie, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.sessions.opts.MaxAge / time.Second)})
	s.audit(AuditEntry{Time: now.UTC(), Actor: who.actor(), Role: string(who.role), Action: "session.login",
		Target: who.id, Detail: "dashboard session from " + s.requestSource(r), Result: "ok", Status: http.StatusOK})
	s.metrics.requests.WithLabelValues(route, codeLabel(http.StatusOK)).Inc()
	writeJSON(w, http.StatusOK, s.sessionInfo(who, *sess))
}

// sessionOf returns the caller and session of r's cookie; with a cookie
// that names no live session it counts the failure (an absent cookie is
// no failure: it is how a page learns that it must sign in).
func (s *Server) sessionOf(r *http.Request, route string) (caller, session, error) {
	cookie := sessionCookie(r)
	if cookie == "" {
		return caller{}, session{}, errNoSession
	}
	sess, err := s.sessions.use(cookie, s.now())
	if err == nil {
		var who caller
		if who, err = s.tokenHolder(sess.tokenID); err == nil {
			return who, sess, nil
		}
		if errors.Is(err, errUnknownToken) {
			s.sessions.endToken(sess.tokenID)
		}
	}
	s.authFailed(r, route, "", err)
	return caller{}, session{}, err
}

// uiSession tells a page who its session is, and its CSRF token.
func (s *Server) uiSession(w http.ResponseWriter, r *http.Request) {
	const route = "GET /ui/session"
	who, sess, err := s.sessionOf(r, route)
	if err != nil {
		s.writeError(w, route, http.StatusUnauthorized, "unauthorized", "not signed in")
		return
	}
	s.metrics.requests.WithLabelValues(route, codeLabel(http.StatusOK)).Inc()
	writeJSON(w, http.StatusOK, s.sessionInfo(who, sess))
}

// uiLogout ends the request's session; it needs the CSRF token, so that
// no other site can sign a browser out.
func (s *Server) uiLogout(w http.ResponseWriter, r *http.Request) {
	const route = "POST /ui/logout"
	who, sess, err := s.sessionOf(r, route)
	if err != nil {
		s.writeError(w, route, http.StatusUnauthorized, "unauthorized", "not signed in")
		return
	}
	if err := checkCSRF(r, sess); err != nil {
		ce := err.(*csrfError)
		s.csrfRefused(r, route, who, "session.logout", ce)
		s.writeError(w, route, http.StatusForbidden, "forbidden", ce.Error())
		return
	}
	s.sessions.end(sessionCookie(r))
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	s.audit(AuditEntry{Time: s.now().UTC(), Actor: who.actor(), Role: string(who.role), Action: "session.logout",
		Target: who.id, Result: "ok", Status: http.StatusOK})
	s.metrics.requests.WithLabelValues(route, codeLabel(http.StatusOK)).Inc()
	writeJSON(w, http.StatusOK, map[string]string{"signed_out": who.name})
}

// csrfRefused counts and audits a change refused for its CSRF token.
// action names the change refused for the audit trail ("" for a read).
func (s *Server) csrfRefused(r *http.Request, name string, who caller, action string, ce *csrfError) {
	s.dash.refused.WithLabelValues(ce.reason).Inc()
	s.metrics.authFailures.WithLabelValues(ce.reason).Inc()
	if action == "" {
		action = "csrf"
	}
	s.audit(AuditEntry{Time: s.now().UTC(), Actor: who.actor(), Role: string(who.role), Action: action,
		Target: r.URL.Path, Detail: fmt.Sprintf("refused: %s (%s)", ce.reason, name), Result: "denied",
		Error: ce.Error(), Status: http.StatusForbidden})
}
