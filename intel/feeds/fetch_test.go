package feeds

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A TLS server on loopback: 200 with validators, then 304 for a
// conditional request that matches; a changed body is fetched again.
func TestFetchHTTPSConditional(t *testing.T) {
	body := atomic.Value{}
	body.Store("203.0.113.1\n203.0.113.2\n")
	var requests, conditional atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		b := body.Load().(string)
		etag := fmt.Sprintf("%q", fmt.Sprint(len(b)))
		if r.Header.Get("If-None-Match") != "" {
			conditional.Add(1)
		}
		if r.Header.Get("If-None-Match") == etag && r.Header.Get("If-Modified-Since") == "Mon, 30 Nov 2026 10:00:00 GMT" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Last-Modified", "Mon, 30 Nov 2026 10:00:00 GMT")
		fmt.Fprint(w, b)
	}))
	defer srv.Close()
	f := &Fetcher{Client: srv.Client(), TempDir: t.TempDir()}
	ctx := context.Background()

	got, err := f.Fetch(ctx, srv.URL+"/feed.txt", Validators{})
	if err != nil || got.NotModified {
		t.Fatalf("first fetch: %+v, %v", got, err)
	}
	defer got.Remove()
	if b, _ := os.ReadFile(got.Path); string(b) != "203.0.113.1\n203.0.113.2\n" || got.Size != int64(len(b)) {
		t.Fatalf("body %q size %d", b, got.Size)
	}
	if got.Validators.ETag != `"24"` || got.Validators.LastModified == "" {
		t.Fatalf("validators %+v", got.Validators)
	}
	again, err := f.Fetch(ctx, srv.URL+"/feed.txt", got.Validators)
	if err != nil || !again.NotModified || again.Validators != got.Validators {
		t.Fatalf("conditional fetch: %+v, %v; want not modified", again, err)
	}
	body.Store("203.0.113.1\n")
	changed, err := f.Fetch(ctx, srv.URL+"/feed.txt", got.Validators)
	if err != nil || changed.NotModified {
		t.Fatalf("fetch after a change: %+v, %v", changed, err)
	}
	defer changed.Remove()
	if requests.Load() != 3 || conditional.Load() != 2 {
		t.Fatalf("%d requests, %d conditional; want 3 and 2", requests.Load(), conditional.Load())
	}
	if err := got.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(got.Path); !os.IsNotExist(err) {
		t.Fatalf("temporary copy left behind: %v", err)
	}
}

// Failures are errors with their result class: an HTTP error status, a
// server that does not answer in time, a body over the limit (announced or
// not), a server that is gone.
func TestFetchFailures(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/500":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "/slow":
			// Never answers while the test runs: the request context
			// may end before the client's deadline (a connection closed
			// under load), and an empty 200 must not stand in for an
			// answer in time.
			<-release
		case "/big":
			w.Header().Set("Content-Length", "2000")
			w.Write([]byte(strings.Repeat("a", 2000)))
		case "/big-chunked":
			for range 20 {
				w.Write([]byte(strings.Repeat("a\n", 50)))
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	dir := t.TempDir()
	f := &Fetcher{Client: srv.Client(), TempDir: dir, MaxBytes: 1000, Timeout: 300 * time.Millisecond}
	for path, want := range map[string]string{"/500": ResultHTTPStatus, "/slow": ResultTimeout, "/big": ResultTooLarge, "/big-chunked": ResultTooLarge} {
		got, err := f.Fetch(context.Background(), srv.URL+path, Validators{})
		if err == nil || ResultOf(err) != want {
			t.Errorf("%s: %+v, %v (result %s), want %s", path, got, err, ResultOf(err), want)
		}
	}
	gone := httptest.NewTLSServer(http.NotFoundHandler())
	url := gone.URL
	gone.Close()
	if _, err := f.Fetch(context.Background(), url+"/x", Validators{}); ResultOf(err) != ResultNetwork {
		t.Errorf("closed server: %v (result %s), want %s", err, ResultOf(err), ResultNetwork)
	}
	// No temporary copy is left behind by a failure.
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left in the temporary directory: %v", left)
	}
}

// A local file is copied; unchanged (same modification time and size) it
// is not modified; over the limit it is refused; missing, a local error.
func TestFetchLocalFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "feed.txt")
	if err := os.WriteFile(p, []byte("203.0.113.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{TempDir: t.TempDir(), MaxBytes: 100}
	got, err := f.Fetch(context.Background(), p, Validators{})
	if err != nil || got.NotModified || got.Size != 12 {
		t.Fatalf("fetch: %+v, %v", got, err)
	}
	got.Remove()
	again, err := f.Fetch(context.Background(), p, got.Validators)
	if err != nil || !again.NotModified {
		t.Fatalf("unchanged file: %+v, %v; want not modified", again, err)
	}
	if err := os.WriteFile(p, []byte(strings.Repeat("203.0.113.1\n", 20)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background(), p, got.Validators); ResultOf(err) != ResultTooLarge {
		t.Fatalf("oversize file: %v, want %s", err, ResultTooLarge)
	}
	if _, err := f.Fetch(context.Background(), filepath.Join(dir, "missing"), Validators{}); ResultOf(err) != ResultLocal {
		t.Fatalf("missing file: %v, want %s", err, ResultLocal)
	}
}

// A MISP feed over HTTPS: the manifest and each event it lists are
// fetched into a directory the parser reads; a 304 on the manifest
// fetches nothing else.
func TestFetchMISPOverHTTPS(t *testing.T) {
	var events atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/feed/")
		if name == "manifest.json" {
			if r.Header.Get("If-None-Match") == `"m1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", `"m1"`)
		} else {
			events.Add(1)
		}
		http.ServeFile(w, r, filepath.Join("testdata/misp", filepath.Base(name)))
	}))
	defer srv.Close()
	f := &Fetcher{Client: srv.Client(), TempDir: t.TempDir()}
	got, err := f.FetchMISP(context.Background(), srv.URL+"/feed/", Validators{})
	if err != nil || got.NotModified {
		t.Fatalf("fetch: %+v, %v", got, err)
	}
	defer got.Remove()
	var entries []Entry
	st, err := ParseMISP(DirOpener(os.DirFS(got.Path)), Options{File: "feed"}, collect(&entries))
	if err != nil || st.Entries != 11 || events.Load() != 2 {
		t.Fatalf("parsed %+v, %v after %d event fetches", st, err, events.Load())
	}
	again, err := f.FetchMISP(context.Background(), srv.URL+"/feed/", got.Validators)
	if err != nil || !again.NotModified || events.Load() != 2 {
		t.Fatalf("conditional: %+v, %v, %d event fetches", again, err, events.Load())
	}
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{"http://feeds.example/x", "ftp://x", "https://user:pw@feeds.example/", "/local/path", "https://"} {
		if CheckURL(u) == nil {
			t.Errorf("CheckURL(%q) accepted", u)
		}
	}
	if err := CheckURL("https://feeds.example/list.txt"); err != nil {
		t.Error(err)
	}
}

// The backoff doubles from Base to Max and jitters within the upper half.
func TestBackoff(t *testing.T) {
	lo := Backoff{Base: time.Second, Max: time.Minute, Rand: func() float64 { return 0 }}
	hi := Backoff{Base: time.Second, Max: time.Minute, Rand: func() float64 { return 0.999999 }}
	for failures, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 7: time.Minute, 50: time.Minute} {
		if got := lo.Delay(failures); got != want/2 {
			t.Errorf("Delay(%d) low = %s, want %s", failures, got, want/2)
		}
		if got := hi.Delay(failures); got >= want || got < want*99/100 {
			t.Errorf("Delay(%d) high = %s, want just under %s", failures, got, want)
		}
	}
}
