package admin_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// browser is an HTTP client with a cookie jar talking to the dashboard's
// loopback listener, as a browser would.
type browser struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
}

func newBrowser(t *testing.T, env *admintest.Env) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(hc.CloseIdleConnections)
	return &browser{t: t, base: "http://" + env.Server.DashboardAddr(), hc: hc}
}

// do sends a request; csrf adds the session's CSRF header.
func (b *browser) do(method, path, body string, csrf bool, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if csrf {
		req.Header.Set(admin.CSRFHeader, b.csrf)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

// login signs in with token and keeps the session's CSRF token.
func (b *browser) login(token string) (*http.Response, admin.SessionInfo) {
	b.t.Helper()
	resp, body := b.do("POST", "/ui/login", url.Values{"token": {token}}.Encode(), false,
		"Content-Type", "application/x-www-form-urlencoded")
	var si admin.SessionInfo
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &si); err != nil {
			b.t.Fatal(err)
		}
		b.csrf = si.CSRFToken
	}
	return resp, si
}

func dashboardEnv(t *testing.T, opts admin.Options) (*admintest.Env, *prometheus.Registry, []string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	opts.DashboardHTTP = "127.0.0.1:0"
	node := admintest.NewNode(nodeID)
	now := time.Now().UTC()
	ind, err := intel.ParseIndicator("203.0.113.7")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		node.AddSighting(store.SightingRecord{Origin: nodeID, Seq: uint64(i + 1), Received: now, Sent: now,
			Sighting: intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Count: 5, Confidence: 80, FirstSeen: now, LastSeen: now}})
	}
	env := admintest.Start(t, node, opts)
	return env, reg, []string{admin.DetectionID(nodeID, 2), admin.DetectionID(nodeID, 1)}
}

// counter reads one labelled counter of reg.
func counter(t *testing.T, reg *prometheus.Registry, name, reason string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// TestDashboardSession walks a session through sign-in, reads, refused
// and accepted changes, and sign-out: the cookie's attributes, the CSRF
// token required on changes (missing and wrong both 403, counted), the
// route table's roles applied to a session as to its token, and a cookie
// that no longer works once signed out or once its token is revoked.
func TestDashboardSession(t *testing.T) {
	env, reg, ids := dashboardEnv(t, admin.Options{})
	rt := env.NewToken(t, admin.RoleResponder, "oncall")
	vt := env.NewToken(t, admin.RoleViewer, "ro")

	b := newBrowser(t, env)
	// The pages and the redirect, with the security headers.
	resp, _ := b.do("GET", "/", "", false)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET /: %d to %q, want 303 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := b.do("GET", "/ui/", "", false)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "<html") {
		t.Fatalf("GET /ui/: %d", resp.StatusCode)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("security headers: CSP %q, X-Frame-Options %q", csp, resp.Header.Get("X-Frame-Options"))
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, " onclick=") || strings.Contains(page, " style=") {
		t.Fatal("index.html has inline script or style, which the CSP refuses")
	}

	// Not signed in: the API refuses the browser.
	if resp, _ := b.do("GET", "/v1/status", "", false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status without a session: %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/ui/session", "", false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session without one: %d", resp.StatusCode)
	}
	// A wrong token does not sign in, and is counted like any failure.
	before := counter(t, reg, "meshward_admin_auth_failures_total", "bad_secret")
	id := strings.Split(rt.Secret, "_")[1]
	if resp, _ := b.login("mwt_" + id + "_" + strings.Repeat("A", 43)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with a wrong secret: %d", resp.StatusCode)
	}
	if got := counter(t, reg, "meshward_admin_auth_failures_total", "bad_secret"); got != before+1 {
		t.Fatalf("bad_secret counted %d, want %d", got, before+1)
	}
	// Nor does a sign-in posted from another origin.
	if resp, _ := b.do("POST", "/ui/login", url.Values{"token": {rt.Secret}}.Encode(), false,
		"Content-Type", "application/x-www-form-urlencoded", "Origin", "http://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin login: %d, want 403", resp.StatusCode)
	}

	resp, si := b.login(rt.Secret)
	if resp.StatusCode != http.StatusOK || si.Role != admin.RoleResponder || si.Name != "oncall" || len(si.CSRFToken) != 64 {
		t.Fatalf("login: %d %+v", resp.StatusCode, si)
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == admin.SessionCookie {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || len(ck.Value) != 64 || ck.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, 256 bits, not Secure over plain HTTP", ck)
	}
	if resp, body := b.do("GET", "/v1/status", "", false); resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status with the session: %d %s (Cache-Control %q)", resp.StatusCode, body, resp.Header.Get("Cache-Control"))
	}

	// A change without the CSRF token, or with a wrong one: 403, counted.
	if resp, body := b.do("POST", "/v1/detections/"+ids[0]+"/ack", `{}`, false); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, admin.CSRFHeader) {
		t.Fatalf("ack without CSRF: %d %s", resp.StatusCode, body)
	}
	good := b.csrf
	b.csrf = strings.Repeat("0", 64)
	if resp, _ := b.do("POST", "/v1/detections/"+ids[0]+"/ack", `{}`, true); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("ack with a wrong CSRF token: %d", resp.StatusCode)
	}
	b.csrf = good
	if m, w := counter(t, reg, "meshward_admin_dashboard_refused_total", "csrf_missing"), counter(t, reg, "meshward_admin_dashboard_refused_total", "csrf_mismatch"); m != 1 || w != 1 {
		t.Fatalf("csrf_missing %d, csrf_mismatch %d, want 1 each", m, w)
	}
	if ack, err := env.Store.AcksFor(ids); err != nil || len(ack) != 0 {
		t.Fatalf("a refused change acknowledged: %v %v", ack, err)
	}
	// With it, the change is made, audited under the token.
	if resp, body := b.do("POST", "/v1/detections/"+ids[0]+"/ack", `{"note":"seen"}`, true); resp.StatusCode != http.StatusOK {
		t.Fatalf("ack with CSRF: %d %s", resp.StatusCode, body)
	}
	a, err := env.Store.Ack(ids[0])
	if err != nil || a.By != "oncall" || a.TokenID != rt.ID {
		t.Fatalf("ack %+v %v", a, err)
	}
	// The route table decides, for a session as for its token.
	if resp, _ := b.do("GET", "/v1/tokens", "", false); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("tokens as a responder session: %d, want 403", resp.StatusCode)
	}
	// A bearer token, when present, is what authenticates.
	if resp, _ := b.do("GET", "/v1/status", "", false, "Authorization", "Bearer garbage"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("cookie with a bad bearer token: %d, want 401", resp.StatusCode)
	}

	// Sign-out needs the CSRF token too, then the cookie no longer works.
	if resp, _ := b.do("POST", "/ui/logout", "", false); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without CSRF: %d", resp.StatusCode)
	}
	stale := ck.Value
	if resp, _ := b.do("POST", "/ui/logout", "", true); resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	nb := newBrowser(t, env) // replays the old cookie, as a thief would
	u, _ := url.Parse(nb.base)
	nb.hc.Jar.SetCookies(u, []*http.Cookie{{Name: admin.SessionCookie, Value: stale, Path: "/"}})
	if resp, _ := nb.do("GET", "/v1/status", "", false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status with a signed-out cookie: %d, want 401", resp.StatusCode)
	}
	if got := counter(t, reg, "meshward_admin_auth_failures_total", "unknown_session"); got != 1 {
		t.Fatalf("unknown_session counted %d, want 1", got)
	}

	// A viewer's session: reads work, changes are refused by the route
	// table even with the CSRF token.
	v := newBrowser(t, env)
	if resp, si := v.login(vt.Secret); resp.StatusCode != http.StatusOK || si.Role != admin.RoleViewer {
		t.Fatalf("viewer login: %d %+v", resp.StatusCode, si)
	}
	if resp, _ := v.do("GET", "/v1/detections", "", false); resp.StatusCode != http.StatusOK {
		t.Fatalf("viewer reads detections: %d", resp.StatusCode)
	}
	if resp, _ := v.do("POST", "/v1/detections/"+ids[1]+"/ack", `{}`, true); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer acks: %d, want 403", resp.StatusCode)
	}
	// Revoking the token ends its sessions.
	if err := env.Client(t, env.AdminToken).RevokeToken(context.Background(), vt.ID); err != nil {
		t.Fatal(err)
	}
	if resp, _ := v.do("GET", "/v1/detections", "", false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session of a revoked token: %d, want 401", resp.StatusCode)
	}
	// Each request reads the token again: one deleted from the store by
	// other means ends its session too.
	ot := env.NewToken(t, admin.RoleViewer, "other")
	o := newBrowser(t, env)
	if resp, _ := o.login(ot.Secret); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if err := env.Store.DeleteToken(ot.ID); err != nil {
		t.Fatal(err)
	}
	if resp, _ := o.do("GET", "/v1/status", "", false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session of a token deleted from the store: %d, want 401", resp.StatusCode)
	}
}

// TestDashboardSessionExpiry: a session ends when unused for the idle
// time, and at its maximum age however much it is used.
func TestDashboardSessionExpiry(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	env, reg, _ := dashboardEnv(t, admin.Options{Now: now, Sessions: admin.SessionOptions{MaxAge: time.Hour, Idle: 10 * time.Minute}})
	vt := env.NewToken(t, admin.RoleViewer, "ro")

	b := newBrowser(t, env)
	b.login(vt.Secret)
	for range 5 { // used every 9 minutes: alive for 45
		advance(9 * time.Minute)
		if resp, _ := b.do("GET", "/v1/status", "", false); resp.StatusCode != http.StatusOK {
			t.Fatalf("session used within its idle time: %d", resp.StatusCode)
		}
	}
	advance(10 * time.Minute)
	if resp, _ := b.do("GET", "/v1/status", "", false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session idle for 10 minutes: %d, want 401", resp.StatusCode)
	}
	b.login(vt.Secret)
	for range 6 {
		advance(9 * time.Minute)
		b.do("GET", "/v1/status", "", false)
	}
	advance(6 * time.Minute) // 60 minutes old, used 6 minutes ago
	if resp, _ := b.do("GET", "/v1/status", "", false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session at its maximum age: %d, want 401", resp.StatusCode)
	}
	if got := counter(t, reg, "meshward_admin_auth_failures_total", "expired_session"); got != 2 {
		t.Fatalf("expired_session counted %d, want 2", got)
	}
}

// TestDashboardHTTPLoopbackOnly: the plain-HTTP listener is refused on
// any address but loopback.
func TestDashboardHTTPLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:80", "localhost:0"} {
		_, err := admin.New(admin.Options{Node: admintest.NewNode(nodeID), Store: admintest.OpenStore(t), DashboardHTTP: addr})
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("DashboardHTTP %q: %v, want refused (loopback only)", addr, err)
		}
	}
}

// TestTriage: a responder assigns and comments on a detection (audited,
// shown with it in the detections list); a viewer may not; bad input is
// refused naming the field.
func TestTriage(t *testing.T) {
	env, _, ids := dashboardEnv(t, admin.Options{})
	rt, vt := env.NewToken(t, admin.RoleResponder, "oncall"), env.NewToken(t, admin.RoleViewer, "ro")
	post := func(tok, path, body string) (int, string) {
		status, b := rawRequest(t, env.Socket, "POST", path, tok, body)
		return status, string(b)
	}
	if s, b := post(vt.Secret, "/v1/detections/"+ids[0]+"/assign", `{"assignee":"alice"}`); s != http.StatusForbidden {
		t.Fatalf("viewer assigns: %d %s", s, b)
	}
	if s, b := post(rt.Secret, "/v1/detections/"+ids[0]+"/assign", `{"assignee":"alice smith"}`); s != http.StatusBadRequest || !strings.Contains(b, "assignee") {
		t.Fatalf("bad assignee: %d %s", s, b)
	}
	if s, b := post(rt.Secret, "/v1/detections/"+ids[0]+"/comments", `{"text":"   "}`); s != http.StatusBadRequest || !strings.Contains(b, "text") {
		t.Fatalf("empty comment: %d %s", s, b)
	}
	if s, b := post(rt.Secret, "/v1/detections/ffffffffffffffff/comments", `{"text":"x"}`); s != http.StatusNotFound {
		t.Fatalf("comment on no detection: %d %s", s, b)
	}
	if s, b := post(rt.Secret, "/v1/detections/"+ids[0]+"/assign", `{"assignee":"alice"}`); s != http.StatusOK {
		t.Fatalf("assign: %d %s", s, b)
	}
	for _, text := range []string{"blocked at the edge", "owner notified"} {
		if s, b := post(rt.Secret, "/v1/detections/"+ids[0]+"/comments", `{"text":"`+text+`"}`); s != http.StatusOK {
			t.Fatalf("comment: %d %s", s, b)
		}
	}
	ds, err := env.Client(t, vt.Secret).Detections(context.Background(), admin.DetectionQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got admin.Detection
	for _, d := range ds {
		if d.ID == ids[0] {
			got = d
		} else if d.Assigned != nil || len(d.Comments) != 0 {
			t.Errorf("detection %s has another's triage: %+v", d.ID, d)
		}
	}
	if got.Assigned == nil || got.Assigned.Assignee != "alice" || got.Assigned.By != "oncall" ||
		len(got.Comments) != 2 || got.Comments[1].Text != "owner notified" || got.Comments[0].TokenID != rt.ID {
		t.Fatalf("detection %s: assigned %+v, comments %+v", ids[0], got.Assigned, got.Comments)
	}
	audit, err := env.Store.Audit(100)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, e := range audit {
		if e.Target == ids[0] {
			actions[e.Action+"/"+e.Result]++
		}
	}
	if actions["detection.assign/ok"] != 1 || actions["detection.comment/ok"] != 2 || actions["detection.assign/denied"] != 1 {
		t.Fatalf("audit of %s: %v", ids[0], actions)
	}
}

// TestEventStream: an open stream receives what the server publishes, as
// Server-Sent Events, in order.
func TestEventStream(t *testing.T) {
	env, _, _ := dashboardEnv(t, admin.Options{})
	vt := env.NewToken(t, admin.RoleViewer, "ro")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+env.Server.DashboardAddr()+"/v1/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+vt.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	// The first comment says the stream is open: publish only then.
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("first line %q %v", line, err)
	}
	ind, _ := intel.ParseIndicator("198.51.100.9")
	for i := range 3 {
		env.Server.PublishEvent(admin.LiveEvent{Kind: admin.EventDetection, DetectionID: string(rune('a' + i)), Indicator: ind})
	}
	for i := range 3 {
		var data string
		for data == "" {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			data, _ = strings.CutPrefix(strings.TrimSpace(line), "data: ")
			if strings.HasPrefix(line, ":") || strings.HasPrefix(line, "retry:") {
				data = ""
			}
		}
		var e admin.LiveEvent
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		if e.Kind != admin.EventDetection || e.DetectionID != string(rune('a'+i)) || e.Indicator != ind || e.Time.IsZero() {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
}

// TestDashboardOverHTTPSAndSocket: the dashboard is served on the HTTPS
// listener, where the session cookie is Secure, and on the Unix socket.
func TestDashboardOverHTTPSAndSocket(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile)
	env := admintest.Start(t, admintest.NewNode(nodeID), admin.Options{TCPAddr: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile})
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	base := "https://" + env.Server.TCPAddr()
	resp, err := hc.PostForm(base+"/ui/login", url.Values{"token": {env.AdminToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == admin.SessionCookie {
			ck = c
		}
	}
	if resp.StatusCode != http.StatusOK || ck == nil || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login over HTTPS: %d, cookie %+v: want Secure, HttpOnly, SameSite=Strict", resp.StatusCode, ck)
	}
	req, _ := http.NewRequest("GET", base+"/v1/status", nil)
	req.AddCookie(ck)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status with the session over HTTPS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The page on the socket.
	if status, body := rawRequest(t, env.Socket, "GET", "/ui/", "", ""); status != http.StatusOK || !strings.Contains(string(body), "app.js") {
		t.Fatalf("GET /ui/ on the socket: %d", status)
	}
	if status, body := rawRequest(t, env.Socket, "GET", "/ui/app.js", "", ""); status != http.StatusOK || !strings.Contains(string(body), "X-CSRF-Token") {
		t.Fatalf("GET /ui/app.js on the socket: %d", status)
	}
}
