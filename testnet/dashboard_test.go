package testnet

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/testenv"
	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/process"
)

// ScreenshotsEnv names a directory to write the dashboard's screenshots
// to (PNG, one per page) when TestDashboardInBrowser runs; unset writes
// none.
const ScreenshotsEnv = "MESHWARD_SCREENSHOTS"

// chromium finds a Chromium or Chrome binary, or stops t (see
// testenv.Unavailable).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Unavailable(t, "needs a headless browser for the dashboard tests: the chromium command (Debian package chromium)")
	return ""
}

// tab is one browser tab in a browser context of its own (its own
// cookies), signed in as one role.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// run runs chromedp actions on the tab, failing the test on error.
func (b *tab) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) and returns
// its value.
func eval[T any](b *tab, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until a JavaScript expression is true, or the tab's
// context ends.
func (b *tab) waitFor(what, expr string) {
	b.t.Helper()
	err := Poll(b.ctx, 25*time.Millisecond, func() (bool, string) {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			return false, err.Error()
		}
		return ok, what
	})
	if err != nil {
		b.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// shoot writes a PNG of the whole page to dir/name.png when dir is set.
func (b *tab) shoot(dir, name string) {
	b.t.Helper()
	if dir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s: %d bytes", name, len(png))
}

// open navigates to a page of the dashboard and waits for sel.
func (b *tab) open(hash, sel string) {
	b.t.Helper()
	b.run("open "+hash, chromedp.Evaluate[chromedp.Void](`location.hash = `+jsString(hash)), chromedp.WaitVisible(chromedp.CSS(sel)))
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// signIn opens the dashboard in a fresh browser context and signs in with
// token; it returns once the mesh overview shows.
func signIn(t *testing.T, browser context.Context, base, token string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	b := &tab{t: t, ctx: ctx, base: base}
	b.run("sign in",
		chromedp.Navigate(base+"/"), // redirected to /ui/
		chromedp.WaitVisible(chromedp.CSS("#login-token")),
		chromedp.SendKeys(chromedp.CSS("#login-token"), token),
		chromedp.Click(chromedp.CSS("#login-go")),
		chromedp.WaitVisible(chromedp.CSS("#members tr.member")))
	return b
}

// TestDashboardInBrowser drives the dashboard of a three-node mesh in
// headless Chromium: a responder signs in and sees the three members,
// watches an SSH brute force detection arrive over the event stream,
// acknowledges it and runs a mesh-wide query from the search box; a
// change without the CSRF token is refused; signing out ends the cookie;
// a viewer sees no action and the API refuses its change; an admin sees
// the tokens. With MESHWARD_SCREENSHOTS=dir it writes a PNG of each page.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh and a browser")
	}
	chrome := chromium(t)
	shots := os.Getenv(ScreenshotsEnv)
	if shots != "" {
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// The ATT&CK page needs the catalog; the test runs without it.
	attackPath := filepath.Join("..", "..", "shared", "data", "attack")
	if _, err := os.Stat(attackPath); err != nil {
		attackPath = ""
	}
	dir := t.TempDir()
	m, err := Start(ctx, Options{Nodes: 3, Dir: dir, Logger: testLogger(t), Configure: func(i int, cfg *node.Config) {
		if i == 0 {
			cfg.Admin.DashboardHTTP = "127.0.0.1:0"
			cfg.Intel.AttackPath = attackPath
			// An expectation no detection meets, for the breaches chart.
			cfg.Process.Expectations = append(cfg.Process.Expectations,
				process.Expectation{Name: "detect-at-once", Stage: process.StageDetect, Within: time.Millisecond})
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	n0 := m.Nodes[0]
	base := "http://" + n0.DashboardAddr()

	// Tokens of each role, made through node 0's socket with its local
	// admin token.
	socket := filepath.Join(dir, "node-00", admin.DefaultSocketName)
	adminTok, err := admin.ReadTokenFile(filepath.Join(dir, "node-00", admin.DefaultTokenFileName))
	if err != nil {
		t.Fatal(err)
	}
	ac, err := admin.NewClient(socket, adminTok, admin.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	tokens := map[admin.Role]admin.CreatedToken{}
	for _, r := range []admin.Role{admin.RoleViewer, admin.RoleResponder} {
		if tokens[r], err = ac.CreateToken(ctx, admin.TokenRequest{Name: "ui-" + string(r), Role: r}); err != nil {
			t.Fatal(err)
		}
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1400, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Loopback only: no name resolves, so the browser reaches no
		// other address.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil { // starts the browser
		t.Fatal(err)
	}

	// A responder signs in and sees the three members.
	r := signIn(t, browser, base, tokens[admin.RoleResponder].Secret)
	if n := eval[int](r, `document.querySelectorAll("#members tr.member").length`); n != 3 {
		t.Fatalf("the overview shows %d members, want 3", n)
	}
	r.waitFor("every member's health", `document.querySelectorAll("#health tr").length === 4`)
	// Every member reports its version, and the tile shows this node's.
	versions := eval[[]string](r, `[...document.querySelectorAll("#health tr.health-member td.version")].map(td => td.textContent)`)
	if len(versions) != 3 {
		t.Fatalf("the health table shows %d versions, want 3", len(versions))
	}
	for i, v := range versions {
		if v == "" || v == "unknown" {
			t.Errorf("member %d of the health table: version %q", i, v)
		}
	}
	if tile := eval[string](r, `$("version-tile").textContent`); tile != versions[0] && !slices.Contains(versions, tile) {
		t.Errorf("the version tile shows %q, want one of the members' %q", tile, versions)
	}
	r.shoot(shots, "overview")

	// A detection arrives live, over the event stream.
	r.open("#/live", "#live-table")
	r.waitFor("the event stream to open", `document.body.dataset.live === "on"`)
	attacker := netip.MustParseAddr("203.0.113.66")
	if err := m.InjectSSHBruteForce(0, attacker, 12); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the detection on the live page", `document.querySelector('#live-table tr.live-event[data-kind="detection"]') !== null`)
	id := eval[string](r, `document.querySelector('#live-table tr.live-event[data-kind="detection"]').dataset.detection`)
	if len(id) != 16 {
		t.Fatalf("live detection ID %q", id)
	}
	// A second site's sighting makes a mesh-wide block, for the other pages.
	if err := m.InjectSSHBruteForce(1, attacker, 12); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the second site's sighting", `document.querySelector('#live-table tr.live-event[data-kind="sighting_received"]') !== null`)
	r.shoot(shots, "live")

	// The responder acknowledges it in the triage queue.
	row := `#detections tr.detection[data-id="` + id + `"]`
	r.open("#/triage", row)
	r.run("acknowledge", chromedp.Click(chromedp.CSS(row+` button.ack`)))
	r.waitFor("the acknowledgement", `document.querySelector('`+row+`[data-acknowledged="true"]') !== null`)
	ack, err := n0.Store().Ack(id)
	if err != nil || ack.By != "ui-responder" || ack.TokenID != tokens[admin.RoleResponder].ID {
		t.Fatalf("stored acknowledgement %+v, %v: want by ui-responder", ack, err)
	}
	// Assigned, commented on and blocked locally, from the same row.
	r.run("assign", chromedp.SetValue(chromedp.CSS(row+` input.assign-input`), "alice"), chromedp.Click(chromedp.CSS(row+` button.assign`)))
	r.waitFor("the assignment", `(document.querySelector('`+row+` td.assigned') || {}).textContent === "alice"`)
	r.run("comment", chromedp.SetValue(chromedp.CSS(row+` input.comment-input`), "owner notified"), chromedp.Click(chromedp.CSS(row+` button.comment`)))
	r.waitFor("the comment", `(document.querySelector('`+row+` td.comments') || {}).textContent === "ui-responder: owner notified"`)
	r.run("block locally", chromedp.Click(chromedp.CSS(row+` button.block`)))
	if err := Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		ps, err := ac.Policies(ctx, admin.ScopeLocal)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range ps {
			if p.Indicator.Value == attacker.String() && p.Action == intel.ActionBlock {
				return true, ""
			}
		}
		return false, "the local block"
	}); err != nil {
		t.Fatal(err)
	}
	ds, err := ac.Detections(ctx, admin.DetectionQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.ID == id && (d.Assigned == nil || d.Assigned.Assignee != "alice" || len(d.Comments) != 1) {
			t.Fatalf("detection %s: assigned %+v, comments %+v", id, d.Assigned, d.Comments)
		}
	}
	r.shoot(shots, "triage")

	// The search box runs a mesh-wide query: every node answers.
	r.run("search", chromedp.SetValue(chromedp.CSS("#search-q"), attacker.String()), chromedp.Click(chromedp.CSS("#search-go")))
	r.waitFor("three answers", `document.querySelectorAll('#query-results tr.query-result[data-status="answered"]').length === 3`)
	r.shoot(shots, "search")

	// The process page charts the stages the detection went through:
	// SVG images drawn by the node, every one loaded.
	r.open("#/process", "#process-stages")
	r.waitFor("the process charts", `(() => {
		const imgs = [...document.querySelectorAll("#process-charts img.chart")];
		return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
	})()`)
	if srcs := eval[[]string](r, `[...document.querySelectorAll("#process-charts img.chart")].map(i => i.getAttribute("src"))`); !slices.Contains(srcs, "/v1/process/chart.svg?stage=detect") ||
		!slices.Contains(srcs, "/v1/process/chart.svg?chart=breaches") {
		t.Errorf("process charts %q: want the detect stage's and the breaches per day", srcs)
	}
	r.shoot(shots, "process")

	if shots != "" {
		ind := intel.IndicatorFromAddr(attacker)
		if err := Poll(ctx, 10*time.Millisecond, func() (bool, string) { return n0.Enforcing(ind), "the mesh block" }); err != nil {
			t.Fatal(err)
		}
		r.open("#/indicator/"+attacker.String(), "#ioc table")
		r.waitFor("the mesh's answers", `document.querySelectorAll('#ioc-mesh tr.query-result').length === 3`)
		r.shoot(shots, "indicator")
		r.open("#/policies", "#policies tr.policy")
		r.shoot(shots, "policies")
		if attackPath != "" {
			r.open("#/attack", "#coverage tr.tactic")
			r.shoot(shots, "attack")
		}
		r.open("#/audit", "#audit tbody tr")
		r.shoot(shots, "audit")
	}

	// A change without the CSRF token is refused; with it, accepted.
	post := `fetch("/v1/detections/` + id + `/comments", {method: "POST", credentials: "same-origin",
		headers: Object.assign({"Content-Type": "application/json"}, %s), body: JSON.stringify({text: "seen in the browser"})}).then(r => r.status)`
	if s := eval[int](r, fmt.Sprintf(post, `{}`)); s != http.StatusForbidden {
		t.Fatalf("a comment without the CSRF token: %d, want 403", s)
	}
	if s := eval[int](r, fmt.Sprintf(post, `{"X-CSRF-Token": state.session.csrf_token}`)); s != http.StatusOK {
		t.Fatalf("a comment with the CSRF token: %d, want 200", s)
	}

	// Signing out ends the session: the old cookie no longer works.
	cookies, err := chromedp.Run(r.ctx, chromedp.Action[network.GetCookiesResult](func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	}))
	if err != nil {
		t.Fatal(err)
	}
	var session string
	for _, c := range cookies.Cookies {
		if c.Name == admin.SessionCookie {
			session = c.Value
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				t.Errorf("session cookie %+v: want HttpOnly and SameSite=Strict", c)
			}
		}
	}
	if session == "" {
		t.Fatal("no session cookie in the browser")
	}
	if s := statusWithCookie(t, base, session); s != http.StatusOK {
		t.Fatalf("the session cookie before sign-out: %d", s)
	}
	r.run("sign out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-token")))
	if s := statusWithCookie(t, base, session); s != http.StatusUnauthorized {
		t.Fatalf("the session cookie after sign-out: %d, want 401", s)
	}

	// A viewer sees the queue without its actions, and the API refuses
	// the viewer's change even with the CSRF token.
	v := signIn(t, browser, base, tokens[admin.RoleViewer].Secret)
	v.open("#/triage", row)
	if n := eval[int](v, `document.querySelectorAll("#detections button").length`); n != 0 {
		t.Fatalf("a viewer is shown %d action buttons", n)
	}
	if eval[bool](v, `!document.querySelector('nav a[data-page="tokens"]').classList.contains("hidden")`) {
		t.Fatal("a viewer is shown the tokens page")
	}
	if s := eval[int](v, `fetch("/v1/detections/`+id+`/assign", {method: "POST", credentials: "same-origin",
		headers: {"Content-Type": "application/json", "X-CSRF-Token": state.session.csrf_token}, body: JSON.stringify({assignee: "mallory"})}).then(r => r.status)`); s != http.StatusForbidden {
		t.Fatalf("a viewer's assignment: %d, want 403", s)
	}
	if s := eval[int](v, `fetch("/v1/local-decisions", {method: "POST", credentials: "same-origin",
		headers: {"Content-Type": "application/json", "X-CSRF-Token": state.session.csrf_token}, body: JSON.stringify({indicator: "198.51.100.1", ttl: "1h"})}).then(r => r.status)`); s != http.StatusForbidden {
		t.Fatalf("a viewer's local block: %d, want 403", s)
	}
	v.shoot(shots, "triage-viewer")

	// An admin sees and manages the tokens.
	a := signIn(t, browser, base, adminTok)
	a.open("#/tokens", "#tokens tbody tr")
	a.run("create a token", chromedp.SetValue(chromedp.CSS("#token-name"), "from-the-ui"), chromedp.Click(chromedp.CSS("#token-create")))
	a.waitFor("the new token's secret", `(document.querySelector("#token-created code") || {}).textContent?.startsWith("mwt_") === true`)
	toks, err := ac.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tk := range toks {
		found = found || tk.Name == "from-the-ui"
	}
	if !found {
		t.Fatal("the token created in the dashboard is not stored")
	}
	a.shoot(shots, "tokens")
	a.open("#/operators", "#operators tbody tr")
	a.shoot(shots, "operators")
}

// statusWithCookie is the status of GET /v1/status sent with a session
// cookie.
func statusWithCookie(t *testing.T, base, session string) int {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/v1/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: admin.SessionCookie, Value: session})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
