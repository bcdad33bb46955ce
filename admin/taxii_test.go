package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/stix"
	"github.com/meshward/meshward/intel/stix/stixtest"
	"github.com/meshward/meshward/intel/taxii"
	"github.com/meshward/meshward/store"
)

// taxiiHTTP is an HTTP client of the admin socket.
func taxiiHTTP(t *testing.T, socket string) *http.Client {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// taxiiGet sends a GET as a TAXII client does and returns the response
// with its body read.
func taxiiGet(t *testing.T, hc *http.Client, method, path string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://meshward"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", admin.TAXIIMediaType)
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func basic(tok string) map[string]string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("analyst", tok)
	return map[string]string{"Authorization": req.Header.Get("Authorization")}
}

// taxiiEnv is an admin API over a fake node holding n reports and n
// sightings received one second apart, and n policies.
func taxiiEnv(t *testing.T, n int) (*admintest.Env, *prometheus.Registry, time.Time) {
	reg := prometheus.NewRegistry()
	node := admintest.NewNode(nodeID)
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		addReport(node, i, t0)
		ind := intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
		node.AddSighting(store.SightingRecord{Origin: nodeID, Seq: uint64(i + 1), Received: t0.Add(time.Duration(i) * time.Second), Sent: t0,
			Sighting: intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Technique: "T1110.001", Confidence: 70, Count: 5,
				FirstSeen: t0.Add(-time.Minute), LastSeen: t0}})
		node.AddPolicy(intel.NewPolicy(intel.ActionBlock, ind, "corroborated", "operator:alice", t0.Add(time.Duration(i)*time.Second), time.Hour), false)
	}
	env := admintest.Start(t, node, admin.Options{Registerer: reg, Now: func() time.Time { return t0.Add(time.Minute) }})
	return env, reg, t0
}

func addReport(node *admintest.Node, i int, t0 time.Time) {
	ind := intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}))
	r := intel.IndicatorReport{Indicator: ind, Source: "feed:test", Confidence: 60, ValidFrom: t0}
	if i%2 == 0 {
		r.Technique = "T1071"
	}
	at := t0.Add(time.Duration(i) * time.Second)
	node.AddReport(store.ReportRecord{Origin: nodeID, Seq: uint64(1000 + i), Report: r, Received: at, Sent: at})
}

const colPath = "/taxii2/api/collections/"

func TestTAXIIDiscoveryAndCollections(t *testing.T) {
	env, _, _ := taxiiEnv(t, 3)
	hc := taxiiHTTP(t, env.Socket)
	viewer := env.NewToken(t, admin.RoleViewer, "taxii").Secret
	for _, auth := range []map[string]string{{"Authorization": "Bearer " + viewer}, basic(viewer)} {
		resp, b := taxiiGet(t, hc, "GET", "/taxii2/", auth)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != admin.TAXIIMediaType {
			t.Fatalf("discovery: %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		var d taxii.Discovery
		json.Unmarshal(b, &d)
		if d.Default != "http://meshward/taxii2/api/" || len(d.APIRoots) != 1 {
			t.Fatalf("discovery %s", b)
		}
	}
	resp, b := taxiiGet(t, hc, "GET", colPath, basic(viewer))
	var cols struct{ Collections []taxii.Collection }
	if err := json.Unmarshal(b, &cols); err != nil || resp.StatusCode != 200 || len(cols.Collections) != 3 {
		t.Fatalf("collections: %d %s", resp.StatusCode, b)
	}
	for _, c := range cols.Collections {
		if !c.CanRead || c.CanWrite || c.MediaTypes[0] != admin.STIXMediaType {
			t.Errorf("collection %+v", c)
		}
		resp, b := taxiiGet(t, hc, "GET", colPath+c.ID+"/", basic(viewer))
		if resp.StatusCode != 200 || !strings.Contains(string(b), c.ID) {
			t.Errorf("collection %s: %d %s", c.ID, resp.StatusCode, b)
		}
	}
	resp, b = taxiiGet(t, hc, "GET", colPath+"nope/objects/", basic(viewer))
	if resp.StatusCode != 404 || !strings.Contains(string(b), `"http_status":"404"`) {
		t.Errorf("unknown collection: %d %s", resp.StatusCode, b)
	}
}

// TestTAXIIRefusals: 406 for a media type that is not TAXII 2.1, 401 for
// a missing or bad token (counted as the admin API counts them), 405 for
// a write, each with a TAXII error body.
func TestTAXIIRefusals(t *testing.T) {
	env, reg, _ := taxiiEnv(t, 1)
	hc := taxiiHTTP(t, env.Socket)
	viewer := env.NewToken(t, admin.RoleViewer, "taxii").Secret
	objects := colPath + admin.TAXIICollectionID("indicators") + "/objects/"
	for _, accept := range []string{"application/json", "application/taxii+json;version=2.0", "text/html", "application/taxii+json;q=0"} {
		resp, b := taxiiGet(t, hc, "GET", objects, map[string]string{"Authorization": "Bearer " + viewer, "Accept": accept})
		var e struct {
			Title      string
			HTTPStatus string `json:"http_status"`
		}
		json.Unmarshal(b, &e)
		if resp.StatusCode != 406 || e.HTTPStatus != "406" || resp.Header.Get("Content-Type") != admin.TAXIIMediaType {
			t.Errorf("Accept %q: %d %s", accept, resp.StatusCode, b)
		}
	}
	for _, accept := range []string{"application/taxii+json", "application/taxii+json; version=2.1", "*/*", "text/html, application/taxii+json;version=2.1;q=0.5", ""} {
		if resp, b := taxiiGet(t, hc, "GET", objects, map[string]string{"Authorization": "Bearer " + viewer, "Accept": accept}); resp.StatusCode != 200 {
			t.Errorf("Accept %q: %d %s", accept, resp.StatusCode, b)
		}
	}
	before := authFailures(t, reg)
	id := strings.Split(viewer, "_")[1]
	for _, hdr := range []map[string]string{
		{}, basic("wrong"), basic("mwt_" + id + "_" + strings.Repeat("A", 43)), {"Authorization": "Bearer mwt_0011223344556677_" + strings.Repeat("A", 43)},
	} {
		resp, b := taxiiGet(t, hc, "GET", objects, hdr)
		if resp.StatusCode != 401 || !strings.Contains(string(b), `"http_status":"401"`) || !strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), " "), "Basic") {
			t.Errorf("%v: %d %s %v", hdr, resp.StatusCode, b, resp.Header)
		}
	}
	after := authFailures(t, reg)
	for reason, n := range map[string]int{"missing_token": 1, "malformed_token": 1, "bad_secret": 1, "unknown_token": 1} {
		if after[reason]-before[reason] != n {
			t.Errorf("auth failures %s: %d more, want %d (%v -> %v)", reason, after[reason]-before[reason], n, before, after)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		resp, b := taxiiGet(t, hc, m, objects, basic(viewer))
		if resp.StatusCode != 405 || !strings.Contains(string(b), "read-only") || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d %s", m, resp.StatusCode, b)
		}
	}
	for _, q := range []string{"?limit=0", "?limit=x", "?added_after=yesterday", "?next=!!", "?next=eA", "?match[version]=nope"} {
		if resp, b := taxiiGet(t, hc, "GET", objects+q, basic(viewer)); resp.StatusCode != 400 || !strings.Contains(string(b), `"http_status":"400"`) {
			t.Errorf("%s: %d %s", q, resp.StatusCode, b)
		}
	}
}

type envelope struct {
	More    bool              `json:"more"`
	Next    string            `json:"next"`
	Objects []json.RawMessage `json:"objects"`
}

// pollAll pages through path as a TAXII client does, while more, and
// returns the object ids in order; between pages it calls between.
func pollAll(t *testing.T, hc *http.Client, path string, auth map[string]string, between func(page int)) ([]string, string) {
	t.Helper()
	var ids []string
	next, last := "", ""
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("more than 100 pages")
		}
		p := path
		if next != "" {
			p += "&next=" + next
		}
		resp, b := taxiiGet(t, hc, "GET", p, auth)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, b)
		}
		var env envelope
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatal(err)
		}
		for _, o := range env.Objects {
			var h struct{ ID string }
			json.Unmarshal(o, &h)
			ids = append(ids, h.ID)
		}
		if len(env.Objects) > 0 {
			first := resp.Header.Get("X-TAXII-Date-Added-First")
			if first == "" || first < last {
				t.Fatalf("page %d: X-TAXII-Date-Added-First %q after last %q", page, first, last)
			}
			last = resp.Header.Get("X-TAXII-Date-Added-Last")
		}
		if !env.More {
			return ids, last
		}
		if env.Next == "" {
			t.Fatal("more without next")
		}
		next = env.Next
		if between != nil {
			between(page)
		}
	}
}

// TestTAXIIPagingStable: paging while more gives every object exactly
// once even as new reports arrive between pages (they come at the end),
// and added_after from the last page's X-TAXII-Date-Added-Last gives only
// what came since.
func TestTAXIIPagingStable(t *testing.T) {
	env, _, t0 := taxiiEnv(t, 40)
	hc := taxiiHTTP(t, env.Socket)
	auth := basic(env.NewToken(t, admin.RoleViewer, "taxii").Secret)
	objects := colPath + admin.TAXIICollectionID("indicators") + "/objects/?limit=7"
	all, _ := pollAll(t, hc, objects, auth, nil)
	// 40 indicators and 20 indicates relationships; no identity or
	// attack-pattern (those stand for names, not records).
	if len(all) != 60 {
		t.Fatalf("%d objects, want 60", len(all))
	}
	added := 0
	ids, last := pollAll(t, hc, objects, auth, func(page int) {
		if page < 3 {
			addReport(env.Node, 100+added, t0) // received later than everything before
			added++
		}
	})
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("object %s served twice", id)
		}
		seen[id] = true
	}
	for _, id := range all {
		if !seen[id] {
			t.Fatalf("object %s missed while objects arrived", id)
		}
	}
	if len(ids) != 60+added+2 { // reports 100 and 102 have a technique
		t.Fatalf("%d objects, want %d", len(ids), 60+added+2)
	}
	// Nothing new: added_after the last date added gives nothing.
	after := colPath + admin.TAXIICollectionID("indicators") + "/objects/?added_after=" + last
	if got, _ := pollAll(t, hc, after, auth, nil); len(got) != 0 {
		t.Fatalf("added_after %s: %d objects, want none", last, len(got))
	}
	addReport(env.Node, 201, t0)
	if got, _ := pollAll(t, hc, after, auth, nil); len(got) != 1 {
		t.Fatalf("added_after %s with one new report: %d objects, want 1", last, len(got))
	}
}

// TestTAXIIObjectsValidateAndFilter: every object of every collection
// validates against the OASIS schemas; match[type], match[id], the
// object, versions and manifest endpoints agree.
func TestTAXIIObjectsValidateAndFilter(t *testing.T) {
	v := stixtest.New(t)
	env, _, _ := taxiiEnv(t, 5)
	hc := taxiiHTTP(t, env.Socket)
	auth := basic(env.NewToken(t, admin.RoleViewer, "taxii").Secret)
	types := map[string]int{}
	for _, col := range []string{"indicators", "sightings", "policies"} {
		base := colPath + admin.TAXIICollectionID(col)
		resp, b := taxiiGet(t, hc, "GET", base+"/objects/", auth)
		var e envelope
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 200 || e.More {
			t.Fatalf("%s: %d %s", col, resp.StatusCode, b)
		}
		for _, o := range e.Objects {
			typ, err := v.Object(o)
			if err != nil {
				t.Fatalf("%s: %v", col, err)
			}
			types[typ]++
		}
		var first struct{ ID, Type, Modified string }
		json.Unmarshal(e.Objects[0], &first)
		resp, b = taxiiGet(t, hc, "GET", base+"/objects/?match[type]="+first.Type+"&match[id]="+first.ID, auth)
		var one envelope
		json.Unmarshal(b, &one)
		one = envelope{}
		json.Unmarshal(b, &one)
		if len(one.Objects) != 1 {
			t.Errorf("%s: match[id]: %s", col, b)
		}
		resp, b = taxiiGet(t, hc, "GET", base+"/objects/"+first.ID+"/", auth)
		if one = (envelope{}); json.Unmarshal(b, &one) != nil || resp.StatusCode != 200 || len(one.Objects) != 1 {
			t.Errorf("%s: object %s: %d %s", col, first.ID, resp.StatusCode, b)
		}
		resp, b = taxiiGet(t, hc, "GET", base+"/objects/"+first.ID+"/versions/", auth)
		var vers struct{ Versions []string }
		if json.Unmarshal(b, &vers); resp.StatusCode != 200 || len(vers.Versions) != 1 || vers.Versions[0] != first.Modified {
			t.Errorf("%s: versions: %d %s", col, resp.StatusCode, b)
		}
		if resp, b := taxiiGet(t, hc, "GET", base+"/objects/indicator--00000000-0000-4000-8000-000000000000/", auth); resp.StatusCode != 404 {
			t.Errorf("%s: unknown object: %d %s", col, resp.StatusCode, b)
		}
		resp, b = taxiiGet(t, hc, "GET", base+"/manifest/?limit=2", auth)
		var man struct {
			More    bool
			Objects []struct {
				ID, Version string
				DateAdded   string `json:"date_added"`
			}
		}
		if json.Unmarshal(b, &man); resp.StatusCode != 200 || len(man.Objects) != 2 || !man.More || man.Objects[0].ID != first.ID || man.Objects[0].Version != first.Modified {
			t.Errorf("%s: manifest: %d %s", col, resp.StatusCode, b)
		}
		resp, b = taxiiGet(t, hc, "GET", base+"/objects/?match[type]=malware", auth)
		if one = (envelope{}); json.Unmarshal(b, &one) != nil || resp.StatusCode != 200 || len(one.Objects) != 0 {
			t.Errorf("%s: match[type]=malware: %s", col, b)
		}
	}
	for _, typ := range []string{"indicator", "sighting", "relationship"} {
		if types[typ] == 0 {
			t.Errorf("no %s served: %v", typ, types)
		}
	}
	t.Logf("validated %v", types)
}

// TestTAXIIClientAgainstServer: the client discovers the API root, lists
// the collections and polls one in pages, with Basic and with bearer
// authentication, and resumes with added_after.
func TestTAXIIClientAgainstServer(t *testing.T) {
	env, _, t0 := taxiiEnv(t, 25)
	tok := env.NewToken(t, admin.RoleViewer, "taxii").Secret
	ctx := context.Background()
	for _, auth := range []taxii.Auth{taxii.AuthBasic, taxii.AuthBearer} {
		c, err := taxii.New(taxii.Options{HTTPClient: taxiiHTTP(t, env.Socket), Token: tok, Auth: auth, PageLimit: 4})
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Discover(ctx, "http://meshward/taxii2/")
		if err != nil {
			t.Fatal(err)
		}
		root, err := c.APIRoot(ctx, d.Default)
		if err != nil || root.Versions[0] != taxii.MediaType {
			t.Fatalf("api root %+v, %v", root, err)
		}
		cols, err := c.Collections(ctx, d.Default)
		if err != nil || len(cols) != 3 {
			t.Fatalf("collections %+v, %v", cols, err)
		}
		var got []string
		res, err := c.Poll(ctx, taxii.CollectionURL(d.Default, admin.TAXIICollectionID("indicators")), time.Time{}, func(e stix.Entry) error {
			got = append(got, e.Indicator.Value)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// 25 indicators and 13 relationships in pages of 4.
		if len(got) != 25 || res.Pages != 10 || res.Objects != 38 || res.Skipped["relationship"] != 13 || res.LastAdded.IsZero() {
			t.Fatalf("poll: %d entries, %+v", len(got), res)
		}
		if got[0] != "203.0.0.0" || got[24] != "203.0.0.24" {
			t.Fatalf("entries out of order: %v", got)
		}
		res2, err := c.Poll(ctx, taxii.CollectionURL(d.Default, admin.TAXIICollectionID("indicators")), res.LastAdded, func(stix.Entry) error { return nil })
		if err != nil || res2.Objects != 0 || res2.Pages != 1 {
			t.Fatalf("resumed poll: %+v, %v", res2, err)
		}
	}
	_ = t0
	// A bad token is the server's TAXII error.
	c, _ := taxii.New(taxii.Options{HTTPClient: taxiiHTTP(t, env.Socket), Token: "nope", Auth: taxii.AuthBasic})
	_, err := c.Collections(ctx, "http://meshward/taxii2/api/")
	var te *taxii.Error
	if !errors.As(err, &te) || te.Status != 401 || te.Title != "unauthorized" {
		t.Fatalf("bad token: %v", err)
	}
	// A response over the bound is refused.
	c, _ = taxii.New(taxii.Options{HTTPClient: taxiiHTTP(t, env.Socket), Token: tok, MaxResponseBytes: 512})
	_, err = c.Poll(ctx, taxii.CollectionURL("http://meshward/taxii2/api/", admin.TAXIICollectionID("indicators")), time.Time{}, func(stix.Entry) error { return nil })
	if !errors.Is(err, stix.ErrMalformed) || !strings.Contains(err.Error(), "over 512 bytes") {
		t.Fatalf("oversized page: %v", err)
	}
	_ = fmt.Sprint()
}

// BenchmarkTAXIIPage: one page of 1000 objects of a collection made of
// 10000 reports (each page maps every report the node holds, up to the
// scan bound, and keeps the first 1000 after the cursor). The fake node
// hands its reports without the store's envelope reads.
func BenchmarkTAXIIPage(b *testing.B) {
	node := admintest.NewNode(nodeID)
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := range 10000 {
		addReport(node, i, t0)
	}
	st, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	env := admintest.StartWithStore(b, node, st, admin.Options{})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", env.Socket)
	}}}
	defer hc.CloseIdleConnections()
	path := "http://meshward" + colPath + admin.TAXIICollectionID("indicators") + "/objects/?limit=1000"
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+env.AdminToken)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		b.SetBytes(n)
	}
}

// TestTAXIIPagingPastUnmappable: records that cannot be turned into STIX
// are left out without cutting a page short or ending the paging early.
func TestTAXIIPagingPastUnmappable(t *testing.T) {
	node := admintest.NewNode(nodeID)
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := range 12 {
		if i%4 == 1 {
			addReport(node, i, t0)
			continue
		}
		node.AddReport(store.ReportRecord{Origin: nodeID, Seq: uint64(i + 1), Received: t0.Add(time.Duration(i) * time.Second),
			Report: intel.IndicatorReport{Indicator: intel.Indicator{Type: "x-unknown", Value: "v"}, Source: "s", ValidFrom: t0}})
	}
	env := admintest.Start(t, node, admin.Options{})
	hc := taxiiHTTP(t, env.Socket)
	auth := basic(env.NewToken(t, admin.RoleViewer, "taxii").Secret)
	ids, _ := pollAll(t, hc, colPath+admin.TAXIICollectionID("indicators")+"/objects/?limit=1", auth, nil)
	if len(ids) != 3 {
		t.Fatalf("%d objects, want the 3 indicators of the mappable reports: %v", len(ids), ids)
	}
}

// countingNode counts the full reads of the reports.
type countingNode struct {
	*admintest.Node
	mu    sync.Mutex
	reads int
}

func (n *countingNode) Reports(ctx context.Context, limit int) ([]store.ReportRecord, error) {
	if limit > 1 {
		n.mu.Lock()
		n.reads++
		n.mu.Unlock()
	}
	return n.Node.Reports(ctx, limit)
}

func (n *countingNode) fullReads() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reads
}

// TestTAXIIPollReadsReportsOnce: the pages of one poll read the reports
// once (each costs a signature check a report); a new report makes the
// next page read them again, and it is served.
func TestTAXIIPollReadsReportsOnce(t *testing.T) {
	node := &countingNode{Node: admintest.NewNode(nodeID)}
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := range 20 {
		addReport(node.Node, i, t0)
	}
	st := admintest.OpenStore(t)
	socket := t.TempDir() + "/admin.sock"
	srv, err := admin.New(admin.Options{Node: node, Store: st, SocketPath: socket})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tok, err := admin.ReadTokenFile(srv.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := taxii.New(taxii.Options{HTTPClient: taxiiHTTP(t, socket), Token: tok, PageLimit: 5})
	u := taxii.CollectionURL("http://meshward/taxii2/api/", admin.TAXIICollectionID("indicators"))
	res, err := c.Poll(context.Background(), u, time.Time{}, func(stix.Entry) error { return nil })
	if err != nil || res.Pages != 6 || res.Entries != 20 {
		t.Fatalf("poll %+v, %v", res, err)
	}
	if got := node.fullReads(); got != 1 {
		t.Fatalf("%d full reads of the reports for %d pages, want 1", got, res.Pages)
	}
	addReport(node.Node, 21, t0)
	res, err = c.Poll(context.Background(), u, res.LastAdded, func(stix.Entry) error { return nil })
	if err != nil || res.Entries != 1 || node.fullReads() != 2 {
		t.Fatalf("after a new report: %+v, %v, %d full reads", res, err, node.fullReads())
	}
}
