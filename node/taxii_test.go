package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/stix"
	"github.com/meshward/meshward/intel/taxii"
)

// authFailureMetric reads meshward_admin_auth_failures_total{reason}.
func authFailureMetric(t *testing.T, n *Node, reason string) float64 {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshward_admin_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestTAXIIOnRealNode behaves as a standard TAXII 2.1 client against a
// real node's admin listener: discovery, collections, objects paged while
// more with Basic authentication, added_after, the media type and 406, a
// bad token refused and counted, writes refused with 405; then the
// package's own client polls the same collection.
func TestTAXIIOnRealNode(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.Gossip.Indicators = true })
	socket := n.deps.Config.SocketPath()
	ac := localAdminClient(t, socket)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	viewer, err := ac.CreateToken(ctx, admin.TokenRequest{Name: "taxii-reader", Role: admin.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	const reports = 9
	for i := range reports {
		req := admin.ReportRequest{Indicator: fmt.Sprintf("203.0.113.%d", i+1), Confidence: 60, Labels: []string{"scanner"}}
		if i%3 == 0 {
			req.Technique = "T1110.001"
		}
		if _, err := ac.PublishReport(ctx, req); err != nil {
			t.Fatalf("publish report %d: %v", i, err)
		}
	}

	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer hc.CloseIdleConnections()
	get := func(path, accept, user, pass, method string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, "http://meshward"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		if pass != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	const mt = "application/taxii+json;version=2.1"

	resp, b := get("/taxii2/", mt, "analyst", viewer.Secret, "GET")
	var disc taxii.Discovery
	if json.Unmarshal(b, &disc); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != mt || disc.Default == "" {
		t.Fatalf("discovery: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	root, _ := url.Parse(disc.Default)
	resp, b = get(root.Path+"collections/", mt, "analyst", viewer.Secret, "GET")
	var cols struct{ Collections []taxii.Collection }
	if json.Unmarshal(b, &cols); resp.StatusCode != 200 || len(cols.Collections) != 3 {
		t.Fatalf("collections: %d %s", resp.StatusCode, b)
	}
	col := root.Path + "collections/" + admin.TAXIICollectionID("indicators") + "/"

	// Paging while more, two objects a page.
	var ids []string
	var lastAdded string
	next := ""
	for page := 0; ; page++ {
		if page > 20 {
			t.Fatal("more than 20 pages")
		}
		q := "objects/?limit=2"
		if next != "" {
			q += "&next=" + next
		}
		resp, b := get(col+q, mt, "analyst", viewer.Secret, "GET")
		var env struct {
			More    bool
			Next    string
			Objects []struct{ ID, Type, Pattern string }
		}
		if err := json.Unmarshal(b, &env); err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != mt {
			t.Fatalf("page %d: %d %s", page, resp.StatusCode, b)
		}
		if len(env.Objects) > 2 {
			t.Fatalf("page %d: %d objects over the limit of 2", page, len(env.Objects))
		}
		for _, o := range env.Objects {
			ids = append(ids, o.ID)
		}
		lastAdded = resp.Header.Get("X-TAXII-Date-Added-Last")
		if !env.More {
			break
		}
		next = env.Next
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("%s served twice", id)
		}
		seen[id] = true
	}
	if len(ids) != reports+3 { // 9 indicators, 3 indicates relationships
		t.Fatalf("%d objects, want %d", len(ids), reports+3)
	}
	resp, b = get(col+"objects/?added_after="+lastAdded, mt, "analyst", viewer.Secret, "GET")
	if resp.StatusCode != 200 || strings.Contains(string(b), `"objects"`) {
		t.Fatalf("added_after the last: %d %s", resp.StatusCode, b)
	}
	if _, err := ac.PublishReport(ctx, admin.ReportRequest{Indicator: "evil.example.com", Confidence: 90}); err != nil {
		t.Fatal(err)
	}
	resp, b = get(col+"objects/?added_after="+lastAdded, mt, "analyst", viewer.Secret, "GET")
	if resp.StatusCode != 200 || !strings.Contains(string(b), "evil.example.com") || strings.Count(string(b), `"type":"indicator"`) != 1 {
		t.Fatalf("added_after with one new report: %d %s", resp.StatusCode, b)
	}

	// The media type: 406 when Accept does not allow TAXII 2.1.
	if resp, b := get(col+"objects/", "application/json", "analyst", viewer.Secret, "GET"); resp.StatusCode != 406 || !strings.Contains(string(b), `"http_status":"406"`) {
		t.Fatalf("Accept application/json: %d %s", resp.StatusCode, b)
	}
	// A bad token is refused and counted.
	before := authFailureMetric(t, n, "bad_secret")
	id := strings.Split(viewer.Secret, "_")[1]
	if resp, b := get(col+"objects/", mt, "analyst", "mwt_"+id+"_"+strings.Repeat("A", 43), "GET"); resp.StatusCode != 401 || !strings.Contains(string(b), `"http_status":"401"`) {
		t.Fatalf("bad secret: %d %s", resp.StatusCode, b)
	}
	if got := authFailureMetric(t, n, "bad_secret"); got != before+1 {
		t.Fatalf("bad_secret failures %v, want %v", got, before+1)
	}
	// A viewer cannot write: there are no writes.
	if resp, b := get(col+"objects/", mt, "analyst", viewer.Secret, "POST"); resp.StatusCode != 405 {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}

	// The package's client polls the same collection.
	c, err := taxii.New(taxii.Options{HTTPClient: hc, Token: viewer.Secret, Auth: taxii.AuthBasic, PageLimit: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got []intel.Indicator
	res, err := c.Poll(ctx, disc.Default+"collections/"+admin.TAXIICollectionID("indicators")+"/", time.Time{}, func(e stix.Entry) error {
		got = append(got, e.Indicator)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != reports+1 || res.Pages != 5 || got[0] != intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.1")) {
		t.Fatalf("client poll: %v, %+v", got, res)
	}
}
