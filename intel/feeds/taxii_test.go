package feeds

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshward/meshward/intel/taxii"
)

func taxiiIndicator(i int) string {
	return fmt.Sprintf(`{"type":"indicator","spec_version":"2.1","id":"indicator--%08d-0000-4000-8000-000000000000","created":"2026-01-01T00:00:00.000Z","modified":"2026-01-01T00:00:00.000Z","pattern":"[ipv4-addr:value = '198.51.100.%d']","pattern_type":"stix","valid_from":"2026-01-01T00:00:00Z","confidence":80}`, i, i)
}

// A taxii feed: the runner polls the collection (two pages, a bearer
// token from token_file) over TLS on loopback, spools the entries and
// publishes them; an unchanged collection publishes nothing again; a
// server error is counted as http_status and publishes nothing.
func TestRunnerTAXIIFeed(t *testing.T) {
	fail := false
	var auth []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		if r.Header.Get("Accept") != taxii.MediaType {
			w.WriteHeader(http.StatusNotAcceptable)
			return
		}
		if fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", taxii.MediaType)
		if r.URL.Query().Get("next") == "" {
			fmt.Fprintf(w, `{"more":true,"next":"p2","objects":[%s,%s]}`, taxiiIndicator(1), taxiiIndicator(2))
			return
		}
		fmt.Fprintf(w, `{"more":false,"objects":[%s,{"type":"malware","spec_version":"2.1","id":"malware--00000000-0000-4000-8000-000000000009","created":"2026-01-01T00:00:00.000Z","modified":"2026-01-01T00:00:00.000Z","name":"x","is_family":false}]}`, taxiiIndicator(3))
	}))
	defer srv.Close()
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{}
	cfg := Config{Name: "taxii-feed", URL: srv.URL + "/api/collections/c1/", Format: FormatTAXII, TokenFile: tok}
	r, reg := newTestRunner(t, dir, pub, cfg, 0)
	r.opts.Client = srv.Client()

	res := sync1(t, r, "taxii-feed")
	if res.Result != ResultOK || res.Published != 3 || pub.count() != 3 {
		t.Fatalf("first poll %+v", res)
	}
	if pub.got[0].Confidence != 80 || pub.got[0].Source != "taxii-feed" || !strings.HasPrefix(pub.got[0].Indicator.Value, "198.51.100.") {
		t.Errorf("report %+v", pub.got[0])
	}
	if len(auth) != 2 || auth[0] != "Bearer s3cret" {
		t.Errorf("authorization %q", auth)
	}
	if res := sync1(t, r, "taxii-feed"); res.Published != 0 || res.Unchanged != 3 {
		t.Fatalf("re-poll %+v", res)
	}
	fail = true
	if res := sync1(t, r, "taxii-feed"); res.Result != ResultHTTPStatus || pub.count() != 3 {
		t.Fatalf("server error: %+v", res)
	}
	if got := counter(t, reg, "meshward_feed_fetch_total", "taxii-feed", ResultHTTPStatus); got != 1 {
		t.Errorf("http_status counted %v", got)
	}
}

// A STIX bundle: indicators become entries with their confidence; other
// objects are skipped and counted by type; a malformed object is an
// error naming the file.
func TestParseSTIX(t *testing.T) {
	bundle := `{"type":"bundle","id":"bundle--00000000-0000-4000-8000-000000000001","objects":[` + taxiiIndicator(5) + `,` +
		`{"type":"malware","spec_version":"2.1","id":"malware--00000000-0000-4000-8000-000000000009","created":"2026-01-01T00:00:00.000Z","modified":"2026-01-01T00:00:00.000Z","name":"x","is_family":false}]}`
	var got []Entry
	st, err := ParseSTIX(strings.NewReader(bundle), Options{File: "b.json", Feed: "stix-feed"}, collect(&got))
	if err != nil || len(got) != 1 || got[0].Indicator.Value != "198.51.100.5" || got[0].Confidence != 80 || got[0].Feed != "stix-feed" || st.Skipped["type:malware"] != 1 {
		t.Fatalf("%+v %+v, %v", got, st, err)
	}
	_, err = ParseSTIX(strings.NewReader(`{"type":"bundle","id":"bundle--00000000-0000-4000-8000-000000000001","objects":[{"type":"indicator","id":"indicator--1"}]}`), Options{File: "b.json"}, collect(&got))
	if err == nil || !strings.HasPrefix(err.Error(), "b.json: malformed feed") {
		t.Fatalf("malformed object: %v", err)
	}
}
