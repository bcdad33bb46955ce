package admin_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

const nodeID = "12D3KooWTestNodeAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// rawRequest sends a request on the socket and returns status and body.
func rawRequest(t *testing.T, socket, method, path, token, body string) (int, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://meshward"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func wantAPIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *admin.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want an API error %d", err, status)
	}
	if ae.Status != status || ae.Code != code {
		t.Fatalf("API error %d %q (%s), want %d %q", ae.Status, ae.Code, ae.Message, status, code)
	}
}

func TestUnauthenticated(t *testing.T) {
	env := admintest.Start(t, admintest.NewNode(nodeID), admin.Options{})
	for _, tok := range []string{"", "garbage", "mwt_0011223344556677_" + strings.Repeat("A", 43)} {
		status, body := rawRequest(t, env.Socket, "GET", "/v1/status", tok, "")
		if status != http.StatusUnauthorized {
			t.Fatalf("token %q: status %d, want 401", tok, status)
		}
		var eb struct{ Error, Code string }
		if err := json.Unmarshal(body, &eb); err != nil || eb.Code != "unauthorized" || eb.Error == "" {
			t.Fatalf("token %q: body %s, want a JSON error with code unauthorized", tok, body)
		}
	}
	// A tampered secret of a real token is refused too.
	bad := env.AdminToken[:len(env.AdminToken)-1] + "x"
	if bad == env.AdminToken {
		bad = env.AdminToken[:len(env.AdminToken)-1] + "y"
	}
	_, err := env.Client(t, bad).Status(context.Background())
	wantAPIError(t, err, 401, "unauthorized")
	// The OpenAPI document needs no token.
	if status, body := rawRequest(t, env.Socket, "GET", "/v1/openapi.yaml", "", ""); status != 200 || !bytes.Equal(body, admin.OpenAPI()) {
		t.Fatalf("openapi.yaml: status %d", status)
	}
}

func TestRoles(t *testing.T) {
	node := admintest.NewNode(nodeID)
	env := admintest.Start(t, node, admin.Options{})
	ctx := context.Background()
	adm := env.Client(t, env.AdminToken)

	viewerTok := env.NewToken(t, admin.RoleViewer, "grafana")
	viewer, responder := env.Client(t, viewerTok.Secret), env.Client(t, env.NewToken(t, admin.RoleResponder, "oncall").Secret)

	// A viewer reads but may not block.
	if _, err := viewer.Status(ctx); err != nil {
		t.Fatalf("viewer status: %v", err)
	}
	_, err := viewer.LocalBlock(ctx, admin.PolicyRequest{Indicator: "203.0.113.7", TTL: "1h"})
	wantAPIError(t, err, 403, "forbidden")
	_, err = viewer.Tokens(ctx)
	wantAPIError(t, err, 403, "forbidden")
	if len(node.MeshPolicies(time.Now())) != 0 || len(node.LocalDecisions(time.Now())) != 0 {
		t.Fatal("a forbidden request changed the node")
	}

	// A responder blocks locally but not mesh-wide.
	if _, err := responder.LocalBlock(ctx, admin.PolicyRequest{Indicator: "203.0.113.8", TTL: "30m", Reason: "scan"}); err != nil {
		t.Fatalf("responder local block: %v", err)
	}
	_, err = responder.Tokens(ctx)
	wantAPIError(t, err, 403, "forbidden")
	// A local block must expire.
	_, err = responder.LocalBlock(ctx, admin.PolicyRequest{Indicator: "203.0.113.9"})
	wantAPIError(t, err, 400, "bad_request")

	// Revoked tokens stop working.
	if err := adm.RevokeToken(ctx, viewerTok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = viewer.Status(ctx)
	wantAPIError(t, err, 401, "unauthorized")
}

func TestAudit(t *testing.T) {
	node := admintest.NewNode(nodeID)
	env := admintest.Start(t, node, admin.Options{})
	ctx := context.Background()
	adm := env.Client(t, env.AdminToken)
	vt := env.NewToken(t, admin.RoleViewer, "ro")
	viewer := env.Client(t, vt.Secret)
	p, err := adm.LocalBlock(ctx, admin.PolicyRequest{Indicator: "203.0.113.7", TTL: "1h", Reason: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := viewer.LocalBlock(ctx, admin.PolicyRequest{Indicator: "203.0.113.8", TTL: "1h"}); err == nil {
		t.Fatal("viewer block succeeded")
	}
	if err := adm.DeleteLocal(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, adm.DeleteLocal(ctx, p.ID), 404, "not_found")
	_, err = adm.LocalBlock(ctx, admin.PolicyRequest{Indicator: "10.0.0.1"})
	wantAPIError(t, err, 400, "bad_request")
	if _, err := viewer.Status(ctx); err != nil { // reads are not audited
		t.Fatal(err)
	}

	es, err := viewer.Audit(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Action+" "+e.Result+" "+e.Target)
		if e.Time.IsZero() || e.Actor == "" {
			t.Errorf("entry without time or actor: %+v", e)
		}
	}
	want := []string{ // newest first
		"local.block error ipv4:10.0.0.1",
		"local.delete error " + p.ID,
		"local.delete ok " + p.ID,
		"local.block denied ",
		"local.block ok ipv4:203.0.113.7",
		"token.create ok " + vt.ID,
		"token.create ok " + strings.Split(env.AdminToken, "_")[1],
	}
	if !slices.Equal(got, want) {
		t.Fatalf("audit trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if a := es[4].Actor; !strings.Contains(a, admin.LocalAdminName) {
		t.Errorf("block audited as %q, want the local admin token", a)
	}
	if a := es[3].Actor; !strings.Contains(a, vt.ID) || es[3].Status != 403 {
		t.Errorf("denied block audited as %+v", es[3])
	}
}

func TestTokensStoredHashed(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(store.DefaultOptions(filepath.Join(dir, "store")))
	if err != nil {
		t.Fatal(err)
	}
	env := admintest.StartWithStore(t, admintest.NewNode(nodeID), st, admin.Options{SocketPath: filepath.Join(dir, "admin.sock")})
	ct := env.NewToken(t, admin.RoleViewer, "")
	rec, err := st.Token(ct.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Hash == "" || strings.Contains(rec.Hash, ct.Secret) || rec.Role != "viewer" {
		t.Fatalf("stored record %+v", rec)
	}
	// The secret part is base64url and may itself hold '_'.
	secrets := []string{ct.Secret, strings.SplitN(ct.Secret, "_", 3)[2], env.AdminToken, strings.SplitN(env.AdminToken, "_", 3)[2]}
	scan := func(wantHash bool) {
		t.Helper()
		sawHash := false
		filepath.WalkDir(filepath.Join(dir, "store"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Fatalf("secret %q found in %s", s, p)
				}
			}
			sawHash = sawHash || bytes.Contains(b, []byte(rec.Hash))
			return nil
		})
		if wantHash && !sawHash {
			t.Fatal("hash not found in the database files: the scan does not see the records")
		}
	}
	scan(true) // the write-ahead log holds the record as written
	env.Server.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	scan(false)
}

func TestPoliciesAndIOCs(t *testing.T) {
	node := admintest.NewNode(nodeID)
	env := admintest.Start(t, node, admin.Options{})
	ctx := context.Background()
	c := env.Client(t, env.AdminToken)
	now := time.Now().UTC()
	for _, v := range []string{"2001:db8::1", "https://evil.example/a/b?c=d", "203.0.113.7"} {
		ind, err := intel.ParseIndicator(v)
		if err != nil {
			t.Fatal(err)
		}
		node.AddSighting(store.SightingRecord{Origin: nodeID, Seq: 1, Received: now, Sent: now,
			Sighting: intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Count: 5, Confidence: 80, FirstSeen: now, LastSeen: now}})
		d, err := c.IOC(ctx, v, "")
		if err != nil {
			t.Fatalf("show %s: %v", v, err)
		}
		if d.Indicator != ind || d.Sightings != 1 || len(d.SightingList) != 1 {
			t.Fatalf("show %s: %+v", v, d)
		}
	}
	_, err := c.IOC(ctx, "198.51.100.1", "")
	wantAPIError(t, err, 404, "not_found")
	_, err = c.IOC(ctx, "not a thing!", "")
	wantAPIError(t, err, 400, "bad_request")
	iocs, err := c.IOCs(ctx, admin.IOCQuery{Text: "EVIL"})
	if err != nil || len(iocs) != 1 || iocs[0].Indicator.Type != intel.URL {
		t.Fatalf("search: %+v, %v", iocs, err)
	}
	iocs, err = c.IOCs(ctx, admin.IOCQuery{Type: "ipv6"})
	if err != nil || len(iocs) != 1 {
		t.Fatalf("list ipv6: %+v, %v", iocs, err)
	}
	ds, err := c.Detections(ctx, admin.DetectionQuery{Limit: 10})
	if err != nil || len(ds) != 3 {
		t.Fatalf("detections: %d, %v", len(ds), err)
	}

	lp, err := c.LocalBlock(ctx, admin.PolicyRequest{Indicator: "203.0.113.7", TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	op := admintest.OperatorKey("alice")
	node.AddOperator(op.Public().(ed25519.PublicKey), intel.OperatorAdmin, "alice")
	ind, _ := intel.ParseIndicator("203.0.113.7")
	res, err := c.SubmitOperator(ctx, admintest.Signed(t, op, node.MeshID(), time.Now(), intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind}))
	if err != nil || res.Policy == nil {
		t.Fatalf("signed block: %+v, %v", res, err)
	}
	mp := res.Policy
	if lp.ID != mp.ID {
		t.Fatal("local and mesh blocks of one indicator should share an ID")
	}
	ps, err := c.Policies(ctx, "")
	if err != nil || len(ps) != 2 || ps[0].Scope != admin.ScopeMesh || ps[1].Scope != admin.ScopeLocal {
		t.Fatalf("policies: %+v, %v", ps, err)
	}
	if p, err := c.Policy(ctx, mp.ID, admin.ScopeLocal); err != nil || p.Scope != admin.ScopeLocal {
		t.Fatalf("show local: %+v, %v", p, err)
	}
	d, err := c.IOC(ctx, "203.0.113.7", "")
	if err != nil || !slices.Equal(d.Policies, []string{"mesh:block", "local:block"}) {
		t.Fatalf("ioc policies: %+v, %v", d.Policies, err)
	}
	if err := c.DeleteLocal(ctx, lp.ID); err != nil {
		t.Fatal(err)
	}
	if ps, _ := c.Policies(ctx, admin.ScopeLocal); len(ps) != 0 {
		t.Fatalf("local decisions after delete: %+v", ps)
	}
	_, err = c.LocalBlock(ctx, admin.PolicyRequest{Action: "observe", Indicator: "203.0.113.7", TTL: "1h"})
	wantAPIError(t, err, 400, "bad_request")
	status, _ := rawRequest(t, env.Socket, "POST", "/v1/local-decisions", env.AdminToken, `{"indicator":"203.0.113.7","ttl":"1h","extra":1}`)
	if status != 400 {
		t.Fatalf("unknown field: status %d, want 400", status)
	}
}
