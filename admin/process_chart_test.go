package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/process"
)

// processNode is a fake node that measures its process: it answers the
// summary it holds and records the period it was asked for.
type processNode struct {
	*admintest.Node
	sum   process.Summary
	since time.Duration
}

func (p *processNode) ProcessSummary(_ context.Context, since time.Duration, _ string) (process.Summary, error) {
	p.since = since
	return p.sum, nil
}
func (p *processNode) ProcessBreaches(context.Context) ([]process.Breach, error) { return nil, nil }
func (p *processNode) ProcessEvent(context.Context, []byte) (process.Stored, bool, error) {
	return process.Stored{}, false, nil
}
func (p *processNode) ProcessExport(context.Context) (process.Export, error) {
	return process.Export{}, nil
}

// svgPaths parses an SVG and returns how many path elements it draws.
func svgPaths(t *testing.T, b []byte) int {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	root, paths := "", 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed SVG: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "path" {
				paths++
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return paths
}

// GET /v1/process/chart.svg draws a stage's CDF or the breaches per day
// for a viewer, as image/svg+xml; a stage or chart it does not know, or a
// bad period, is refused with 400 naming it, and a chart with nothing to
// draw is 404.
func TestProcessChartSVG(t *testing.T) {
	node := &processNode{Node: admintest.NewNode("n1"), sum: process.Summary{
		Incidents:     3,
		Samples:       map[process.Stage][]float64{process.StageTriage: {30, 60, 1200}},
		BreachesByDay: []process.DayCount{{Day: "2026-11-30", Count: 1}, {Day: "2026-12-01", Count: 2}},
	}}
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv, err := admin.New(admin.Options{Node: node, Store: admintest.OpenStore(t), SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	adminTok, err := admin.ReadTokenFile(srv.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	ac, err := admin.NewClient(sock, adminTok, admin.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	viewer, err := ac.CreateToken(t.Context(), admin.TokenRequest{Name: "v", Role: admin.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	defer hc.CloseIdleConnections()
	get := func(query, token string) (int, string, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://meshward/v1/process/chart.svg?"+query, nil)
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
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}

	code, ctype, body := get("stage=triage&since=36h", viewer.Secret)
	if code != 200 || ctype != "image/svg+xml" {
		t.Fatalf("the triage CDF: %d %s %s", code, ctype, body)
	}
	if n := svgPaths(t, body); n == 0 {
		t.Error("the triage CDF draws no path")
	}
	if node.since != 36*time.Hour {
		t.Errorf("asked for the summary of %s, want 36h", node.since)
	}
	code, ctype, body = get("chart=breaches", viewer.Secret)
	if code != 200 || ctype != "image/svg+xml" {
		t.Fatalf("the breaches chart: %d %s %s", code, ctype, body)
	}
	svgPaths(t, body)
	if node.since != 7*24*time.Hour {
		t.Errorf("the default period is %s, want 7d", node.since)
	}

	for _, bad := range []struct {
		query string
		code  int
		names string
	}{
		{"stage=teatime", 400, `stage "teatime"`},
		{"", 400, `stage ""`},
		{"chart=pie&stage=triage", 400, `chart "pie"`},
		{"chart=breaches&stage=triage", 400, `stage "triage"`},
		{"stage=triage&since=0d", 400, `since "0d"`},
		{"stage=triage&since=401d", 400, `since "401d"`},
		{"stage=compliance", 404, "nothing measured"},
	} {
		code, _, body := get(bad.query, viewer.Secret)
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("?%s: %s: %v", bad.query, body, err)
		}
		if code != bad.code || !strings.Contains(e.Error, bad.names) {
			t.Errorf("?%s: %d %q, want %d naming %s", bad.query, code, e.Error, bad.code, bad.names)
		}
	}
	if code, _, _ := get("stage=triage", ""); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", code)
	}
	node.sum.BreachesByDay = nil
	if code, _, body := get("chart=breaches", viewer.Secret); code != 404 {
		t.Errorf("no breaches: %d %s, want 404", code, body)
	}
}
