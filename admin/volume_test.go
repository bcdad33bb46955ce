package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
)

// counterByLabel reads a counter vector of reg by the value of label.
func counterByLabel(t *testing.T, reg *prometheus.Registry, name, label string) map[string]int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}

func rejections(t *testing.T, reg *prometheus.Registry) map[string]int {
	return counterByLabel(t, reg, "meshward_admin_requests_rejected_total", "reason")
}

// addPolicies gives node mesh mesh-wide blocks and local local decisions.
func addPolicies(node *admintest.Node, mesh, local int) map[string]bool {
	want := map[string]bool{}
	for i := range mesh + local {
		ind := intel.Indicator{Type: intel.IPv4, Value: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}
		p := intel.NewPolicy(intel.ActionBlock, ind, "test", "test", time.Now(), time.Hour)
		node.AddPolicy(p, i >= mesh)
		scope := admin.ScopeMesh
		if i >= mesh {
			scope = admin.ScopeLocal
		}
		want[scope+":"+p.ID] = true
	}
	return want
}

// Walking the pages returns every policy once, mesh-wide ones first,
// each scope in ID order, and no page is larger than asked.
func TestPolicyPagesWalk(t *testing.T) {
	node := admintest.NewNode(nodeID)
	want := addPolicies(node, 250, 7)
	env := admintest.Start(t, node, admin.Options{})
	c := env.Client(t, env.NewToken(t, admin.RoleViewer, "ro").Secret)
	ctx := context.Background()

	for _, tc := range []struct {
		scope      string
		size, want int
	}{
		{"", 40, 257}, {"", 50, 257}, {"", 250, 257}, {"", 257, 257}, {"", 1000, 257},
		{admin.ScopeMesh, 40, 250}, {admin.ScopeMesh, 250, 250}, {admin.ScopeLocal, 3, 7},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.scope, tc.size), func(t *testing.T) {
			seen := map[string]bool{}
			var last admin.PolicyView
			pages := 0
			q := admin.PolicyQuery{Scope: tc.scope, Limit: tc.size}
			for {
				page, err := c.PolicyPage(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if len(page.Items) > tc.size || (page.NextCursor != "" && len(page.Items) != tc.size) {
					t.Fatalf("page %d holds %d policies (next %q), want %d", pages, len(page.Items), page.NextCursor, tc.size)
				}
				for _, p := range page.Items {
					k := p.Scope + ":" + p.ID
					if seen[k] || !want[k] {
						t.Fatalf("policy %s listed twice or not held", k)
					}
					if tc.scope != "" && p.Scope != tc.scope {
						t.Fatalf("policy %s in a walk of scope %s", k, tc.scope)
					}
					if last.ID != "" && (last.Scope == p.Scope && last.ID >= p.ID || last.Scope == admin.ScopeLocal && p.Scope == admin.ScopeMesh) {
						t.Fatalf("%s:%s listed before %s", last.Scope, last.ID, k)
					}
					seen[k], last = true, p
				}
				if page.NextCursor == "" {
					break
				}
				q.Cursor = page.NextCursor
			}
			if len(seen) != tc.want {
				t.Fatalf("walk listed %d policies, want %d", len(seen), tc.want)
			}
			if wantPages := (tc.want + tc.size - 1) / tc.size; pages != wantPages {
				t.Fatalf("walk took %d pages, want %d", pages, wantPages)
			}
		})
	}
	// The client's walk agrees, and the node was asked for pages, never
	// for every policy.
	calls := node.PageCalls()
	all, err := c.Policies(ctx, "")
	if err != nil || len(all) != 257 {
		t.Fatalf("Policies: %d, %v", len(all), err)
	}
	if node.PageCalls() == calls {
		t.Fatal("the listing did not page the node's policies")
	}
	// A single policy is looked up, mesh-wide or local.
	for _, p := range []admin.PolicyView{all[0], all[249], all[250], all[256]} { // mesh-wide and local
		got, err := c.Policy(ctx, p.ID, "")
		if err != nil || got.ID != p.ID || got.Scope != p.Scope {
			t.Fatalf("policy %s: %+v, %v", p.ID, got, err)
		}
	}
	if _, err := c.Policy(ctx, "00000000000000ff", ""); err == nil {
		t.Fatal("unknown policy found")
	}
}

// A cursor no page handed out, a cursor of another scope, and a limit out
// of bounds are answered with 400 naming them, and counted.
func TestPolicyPageRefusals(t *testing.T) {
	node := admintest.NewNode(nodeID)
	addPolicies(node, 5, 5)
	reg := prometheus.NewRegistry()
	env := admintest.Start(t, node, admin.Options{Registerer: reg})
	c := env.Client(t, env.AdminToken)
	ctx := context.Background()

	page, err := c.PolicyPage(ctx, admin.PolicyQuery{Limit: 7})
	if err != nil || page.NextCursor == "" {
		t.Fatalf("first page: %+v, %v", page, err)
	}
	for _, tc := range []struct {
		q    admin.PolicyQuery
		want string
	}{
		{admin.PolicyQuery{Cursor: "not a cursor!"}, `cursor "not a cursor!"`},
		{admin.PolicyQuery{Cursor: "bWVzaDp4eXo"}, `cursor "bWVzaDp4eXo"`},   // mesh:xyz
		{admin.PolicyQuery{Cursor: "b3RoZXI6YWJj"}, `cursor "b3RoZXI6YWJj"`}, // other:abc
		{admin.PolicyQuery{Cursor: strings.Repeat("A", 200)}, "too long"},    // oversized
		{admin.PolicyQuery{Scope: admin.ScopeMesh, Cursor: page.NextCursor}, "scope local, not mesh"},
	} {
		_, err := c.PolicyPage(ctx, tc.q)
		wantAPIError(t, err, 400, "bad_request")
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cursor %q: %v, want it to name %s", tc.q.Cursor, err, tc.want)
		}
	}
	for _, l := range []string{"0", "10001", "-1", "ten"} {
		status, body := rawRequest(t, env.Socket, "GET", "/v1/policies?limit="+l, env.AdminToken, "")
		if status != 400 || !strings.Contains(string(body), `limit \"`+l+`\"`) {
			t.Errorf("limit %s: %d %s, want 400 naming the limit", l, status, body)
		}
	}
	if got := rejections(t, reg); got["bad_cursor"] != 5 || got["bad_limit"] != 4 {
		t.Fatalf("rejections %v, want 5 bad_cursor and 4 bad_limit", got)
	}
}

// bulkDomains are n distinct domain indicators of about 60 bytes each, so
// that a command of 2000 of them is well over the ordinary 64 KiB body
// limit.
func bulkDomains(n int) []intel.Indicator {
	out := make([]intel.Indicator, n)
	for i := range out {
		out[i] = intel.Indicator{Type: intel.Domain, Value: fmt.Sprintf("host-%04d.%s.example", i, strings.Repeat("a", 40))}
	}
	return out
}

// fitting returns the longest prefix of inds (at most
// intel.MaxBulkIndicators) whose command body fits intel.MaxOperatorBody.
func fitting(inds []intel.Indicator) []intel.Indicator {
	inds = inds[:min(len(inds), intel.MaxBulkIndicators)]
	for {
		b, _ := json.Marshal(intel.OperatorCommand{Op: intel.OpBlockBulk, Indicators: inds, TTLSeconds: 3600, Reason: "feed",
			Header: intel.OperatorHeader{Mesh: "mesh-" + nodeID, Nonce: strings.Repeat("0", 32), Issued: time.Now(), Expires: time.Now()}})
		if len(b) <= intel.MaxOperatorBody {
			return inds
		}
		inds = inds[:len(inds)*9/10]
	}
}

// A bulk block passes through the API as one command, is audited by its
// count and first indicators, and a refused one changes nothing and names
// the indicator. The largest command the mesh takes, whose request is
// several times the ordinary 64 KiB body limit, passes; a larger one is
// refused with 413.
func TestBulkOperatorCommand(t *testing.T) {
	e := newOperatorEnv(t)
	ctx := context.Background()

	all := bulkDomains(intel.MaxBulkIndicators)
	inds := fitting(all)
	signed := e.sign(t, e.bob, intel.OperatorCommand{Op: intel.OpBlockBulk, Indicators: inds, TTLSeconds: 3600, Reason: "feed"})
	if body, _ := json.Marshal(signed); len(body) < 2*admin.MaxBody || len(body) > admin.MaxOperatorBody {
		t.Fatalf("a request of %d bytes, want one over twice %d and within %d", len(body), admin.MaxBody, admin.MaxOperatorBody)
	}
	_, err := e.viewer.SubmitOperator(ctx, signed)
	wantAPIError(t, err, 403, "forbidden")
	res, err := e.responder.SubmitOperator(ctx, signed)
	if err != nil {
		t.Fatalf("bulk block of %d indicators: %v", len(inds), err)
	}
	if res.Op != intel.OpBlockBulk || res.Count != len(inds) || res.Target != fmt.Sprintf("%d indicators", len(inds)) || res.Policy != nil {
		t.Fatalf("result %+v", res)
	}
	if len(inds) < len(all) {
		over := e.sign(t, e.bob, intel.OperatorCommand{Op: intel.OpBlockBulk, Indicators: all, TTLSeconds: 3600, Reason: "feed"})
		_, err := e.responder.SubmitOperator(ctx, over)
		wantAPIError(t, err, 413, "too_large")
	}
	for _, ind := range []intel.Indicator{inds[0], inds[len(inds)-1]} {
		if _, ok := e.Node.MeshPolicy(intel.PolicyID(intel.ActionBlock, ind), time.Now()); !ok {
			t.Fatalf("%s not blocked", ind)
		}
	}
	audit, err := e.admin_.Audit(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var entry *admin.AuditEntry
	for i := range audit {
		if audit[i].Action == "operator.block_bulk" && audit[i].Result == "ok" {
			entry = &audit[i]
			break
		}
	}
	if entry == nil {
		t.Fatalf("no ok operator.block_bulk audit entry: %+v", audit)
	}
	if !strings.Contains(entry.Detail, fmt.Sprintf("count=%d", len(inds))) || !strings.Contains(entry.Detail, inds[4].Key()) ||
		!strings.Contains(entry.Detail, fmt.Sprintf("+%d more", len(inds)-5)) || strings.Contains(entry.Detail, inds[5].Key()) || len(entry.Detail) > 1024 {
		t.Fatalf("audit detail %q: want the count and the first five indicators", entry.Detail)
	}

	// One protected indicator refuses the command whole.
	if _, err := e.admin_.SubmitOperator(ctx, e.sign(t, e.alice, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "192.0.2.0/24"})); err != nil {
		t.Fatal(err)
	}
	mixed := []intel.Indicator{{Type: intel.IPv4, Value: "198.51.100.1"}, {Type: intel.IPv4, Value: "192.0.2.9"}, {Type: intel.IPv4, Value: "198.51.100.2"}}
	_, err = e.responder.SubmitOperator(ctx, e.sign(t, e.bob, intel.OperatorCommand{Op: intel.OpBlockBulk, Indicators: mixed, TTLSeconds: 3600}))
	wantAPIError(t, err, 409, "conflict")
	if !strings.Contains(err.Error(), "indicators[1] 192.0.2.9:") {
		t.Fatalf("refusal %v does not name the indicator", err)
	}
	if _, ok := e.Node.MeshPolicy(intel.PolicyID(intel.ActionBlock, mixed[0]), time.Now()); ok {
		t.Fatal("a refused bulk command blocked its first indicator")
	}
}

// sizedRequest posts n bytes to path; with chunked, without a length.
func sizedRequest(t *testing.T, socket, path, token string, n int, chunked bool) (int, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer hc.CloseIdleConnections()
	var body io.Reader = bytes.NewReader(bytes.Repeat([]byte(" "), n))
	if chunked {
		body = io.MultiReader(body) // hides the length
	}
	req, err := http.NewRequest("POST", "http://meshward"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// A body over its route's limit is answered with 413 naming the limit,
// whether or not its length is declared, and counted.
func TestBodyTooLarge(t *testing.T) {
	reg := prometheus.NewRegistry()
	env := admintest.Start(t, admintest.NewNode(nodeID), admin.Options{Registerer: reg})
	for _, tc := range []struct {
		path    string
		n       int
		chunked bool
		limit   string
	}{
		{"/v1/operator/commands", admin.MaxOperatorBody + 1, false, fmt.Sprint(admin.MaxOperatorBody)},
		{"/v1/operator/commands", admin.MaxOperatorBody + 1, true, fmt.Sprint(admin.MaxOperatorBody)},
		{"/v1/tokens", admin.MaxBody + 1, false, fmt.Sprint(admin.MaxBody)},
		{"/v1/tokens", admin.MaxBody + 1, true, fmt.Sprint(admin.MaxBody)},
	} {
		status, body := sizedRequest(t, env.Socket, tc.path, env.AdminToken, tc.n, tc.chunked)
		var eb struct{ Error, Code string }
		json.Unmarshal(body, &eb)
		if status != http.StatusRequestEntityTooLarge || eb.Code != "too_large" || !strings.Contains(eb.Error, tc.limit) {
			t.Errorf("%s with %d bytes (chunked %t): %d %.300s, want 413 too_large naming %s", tc.path, tc.n, tc.chunked, status, body, tc.limit)
		}
	}
	// Under the limit, an operator command's body is read: a blank one
	// is malformed, not too large.
	if status, body := sizedRequest(t, env.Socket, "/v1/operator/commands", env.AdminToken, admin.MaxOperatorBody, false); status != 400 {
		t.Errorf("a body at the limit: %d %s, want 400 (read, then found malformed)", status, body)
	}
	if !bytes.Contains(admin.OpenAPI(), []byte(fmt.Sprintf("%d bytes", admin.MaxOperatorBody))) {
		t.Errorf("openapi.yaml does not name the operator command body limit, %d bytes", admin.MaxOperatorBody)
	}
	if got := rejections(t, reg)["body_too_large"]; got != 4 {
		t.Fatalf("body_too_large counted %d times, want 4", got)
	}
	codes := counterByLabel(t, reg, "meshward_admin_requests_total", "code")
	if codes["413"] != 4 {
		t.Fatalf("requests by code %v, want four 413", codes)
	}
}

// The runtime profiles are served to admin tokens only: a viewer gets 403
// (audited), no token 401 (counted); seconds is bounded.
func TestPprof(t *testing.T) {
	reg := prometheus.NewRegistry()
	env := admintest.Start(t, admintest.NewNode(nodeID), admin.Options{Registerer: reg})
	ctx := context.Background()
	var buf bytes.Buffer
	n, err := env.Client(t, env.AdminToken).Profile(ctx, "heap", 0, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := buf.Bytes(); n < 100 || int(n) != len(b) || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("heap profile of %d bytes starts %x, want gzip (1f8b)", n, b[:min(len(b), 4)])
	}
	buf.Reset()
	if _, err := env.Client(t, env.AdminToken).Profile(ctx, "goroutine", 0, &buf); err != nil || buf.Len() == 0 {
		t.Fatalf("goroutine profile: %d bytes, %v", buf.Len(), err)
	}
	status, body := rawRequest(t, env.Socket, "GET", "/debug/pprof/", env.AdminToken, "")
	if status != 200 || !strings.Contains(string(body), "heap") {
		t.Fatalf("index: %d %.200s", status, body)
	}

	viewer := env.Client(t, env.NewToken(t, admin.RoleViewer, "ro").Secret)
	_, err = viewer.Profile(ctx, "heap", 0, io.Discard)
	wantAPIError(t, err, 403, "forbidden")
	_, err = env.Client(t, env.NewToken(t, admin.RoleResponder, "oncall").Secret).Profile(ctx, "goroutine", 0, io.Discard)
	wantAPIError(t, err, 403, "forbidden")
	_, err = env.Client(t, "").Profile(ctx, "heap", 0, io.Discard)
	wantAPIError(t, err, 401, "unauthorized")
	if status, _ := rawRequest(t, env.Socket, "GET", "/debug/pprof/", "", ""); status != 401 {
		t.Fatalf("index without a token: %d, want 401", status)
	}

	admin_ := env.Client(t, env.AdminToken)
	for _, s := range []int{61, 3600} {
		_, err = admin_.Profile(ctx, "profile", s, io.Discard)
		wantAPIError(t, err, 400, "bad_request")
		if !strings.Contains(err.Error(), fmt.Sprintf(`seconds "%d": want 1 to 60`, s)) {
			t.Fatalf("seconds %d: %v", s, err)
		}
	}
	_, err = admin_.Profile(ctx, "cmdline", 0, io.Discard)
	wantAPIError(t, err, 404, "not_found")

	if got := authFailures(t, reg); got["forbidden"] != 2 || got["missing_token"] != 2 {
		t.Fatalf("auth failures %v, want 2 forbidden and 2 missing_token", got)
	}
	if got := rejections(t, reg); got["profile_seconds"] != 2 || got["unknown_profile"] != 1 {
		t.Fatalf("rejections %v", got)
	}
	audit, err := admin_.Audit(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	var denied, ok int
	for _, a := range audit {
		if a.Action == "debug.pprof" {
			switch a.Result {
			case "denied":
				denied++
			case "ok":
				ok++
			}
		}
	}
	if denied != 2 || ok != 3 {
		t.Fatalf("audit: %d denied and %d ok debug.pprof entries, want 2 and 3", denied, ok)
	}
}

// An indicator's detail lists the policies on it and on the ranges that
// cover it, looked up without listing every policy.
func TestIOCCoveringPolicies(t *testing.T) {
	node := admintest.NewNode(nodeID)
	wide := intel.NewPolicy(intel.ActionBlock, intel.Indicator{Type: intel.CIDR, Value: "203.0.112.0/22"}, "range", "t", time.Now(), 0)
	exact := intel.NewPolicy(intel.ActionAllow, intel.Indicator{Type: intel.IPv4, Value: "203.0.113.7"}, "partner", "t", time.Now(), 0)
	other := intel.NewPolicy(intel.ActionBlock, intel.Indicator{Type: intel.IPv4, Value: "203.0.113.8"}, "other", "t", time.Now(), 0)
	parent := intel.NewPolicy(intel.ActionBlock, intel.Indicator{Type: intel.Domain, Value: "evil.example"}, "dom", "t", time.Now(), 0)
	for _, p := range []intel.Policy{wide, exact, other, parent} {
		node.AddPolicy(p, false)
	}
	env := admintest.Start(t, node, admin.Options{})
	c := env.Client(t, env.AdminToken)
	calls := node.PageCalls()
	d, err := c.IOC(context.Background(), "203.0.113.7", "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range d.PolicyList {
		ids = append(ids, p.ID)
	}
	if strings.Join(ids, ",") != exact.ID+","+wide.ID || strings.Join(d.Policies, ",") != "mesh:allow" {
		t.Fatalf("policies %v (tags %v), want the allow on the address and the block of its range", ids, d.Policies)
	}
	d, err = c.IOC(context.Background(), "www.evil.example", "")
	if err != nil || len(d.PolicyList) != 1 || d.PolicyList[0].ID != parent.ID {
		t.Fatalf("subdomain: %+v, %v, want the parent domain's block", d.PolicyList, err)
	}
	if node.PageCalls() != calls {
		t.Fatal("the indicator's detail paged through the policies")
	}
}

// A profile that fails is audited as an error with its status: a CPU
// profile asked for while one is running.
func TestPprofFailureAudited(t *testing.T) {
	env := admintest.Start(t, admintest.NewNode(nodeID), admin.Options{})
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Skipf("CPU profiling in use: %v", err)
	}
	c := env.Client(t, env.AdminToken)
	_, err := c.Profile(context.Background(), "profile", 1, io.Discard)
	pprof.StopCPUProfile()
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError {
		t.Fatalf("CPU profile while one runs: %v, want 500", err)
	}
	audit, err := c.Audit(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) == 0 || audit[0].Action != "debug.pprof" || audit[0].Result != "error" || audit[0].Status != 500 || audit[0].Target != "profile" {
		t.Fatalf("audit %+v, want the failed profile as an error", audit[:min(len(audit), 1)])
	}
}
