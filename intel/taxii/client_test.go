package taxii_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel/stix"
	"github.com/meshward/meshward/intel/taxii"
)

func indicator(i int) string {
	return fmt.Sprintf(`{"type":"indicator","spec_version":"2.1","id":"indicator--%08d-0000-4000-8000-000000000000","created":"2026-01-01T00:00:00.000Z","modified":"2026-01-01T00:00:00.000Z","pattern":"[ipv4-addr:value = '198.51.100.%d']","pattern_type":"stix","valid_from":"2026-01-01T00:00:00Z"}`, i, i)
}

// server answers each objects request with fn's page; it records the
// queries it got.
type server struct {
	mu      sync.Mutex
	queries []string
	auth    []string
}

func (s *server) start(t *testing.T, fn func(w http.ResponseWriter, r *http.Request)) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.queries = append(s.queries, r.URL.RawQuery)
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.mu.Unlock()
		if r.Header.Get("Accept") != taxii.MediaType {
			w.WriteHeader(406)
			return
		}
		fn(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func page(w http.ResponseWriter, last string, body string) {
	w.Header().Set("Content-Type", taxii.MediaType)
	if last != "" {
		w.Header().Set("X-TAXII-Date-Added-Last", last)
	}
	fmt.Fprint(w, body)
}

func collect(t *testing.T, c *taxii.Client, u string, after time.Time) ([]string, taxii.PollResult, error) {
	var got []string
	res, err := c.Poll(context.Background(), u, after, func(e stix.Entry) error {
		got = append(got, e.Indicator.Value)
		return nil
	})
	return got, res, err
}

// TestPollFollowsNext: pages are followed through next while more, with
// the limit, added_after and Basic credentials sent each time.
func TestPollFollowsNext(t *testing.T) {
	var s server
	ts := s.start(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("next") {
		case "":
			page(w, "2026-01-01T00:00:01.000000Z", `{"more":true,"next":"p2","objects":[`+indicator(1)+`,`+indicator(2)+`]}`)
		case "p2":
			page(w, "2026-01-01T00:00:02.000000Z", `{"more":false,"objects":[`+indicator(3)+`]}`)
		}
	})
	c, _ := taxii.New(taxii.Options{Token: "tok", Auth: taxii.AuthBasic, Username: "analyst", PageLimit: 2})
	after := time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)
	got, res, err := collect(t, c, ts.URL+"/api/collections/c1", after)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "198.51.100.1 198.51.100.2 198.51.100.3" || res.Pages != 2 || res.LastAdded.Second() != 2 {
		t.Fatalf("%v %+v", got, res)
	}
	if s.queries[0] != "added_after=2025-12-31T00%3A00%3A00.000000Z&limit=2" || !strings.Contains(s.queries[1], "next=p2") {
		t.Errorf("queries %v", s.queries)
	}
	if !strings.HasPrefix(s.auth[0], "Basic ") {
		t.Errorf("auth %v", s.auth)
	}
}

// TestPollWithoutNext: a server that says more without next is paged by
// added_after from X-TAXII-Date-Added-Last.
func TestPollWithoutNext(t *testing.T) {
	var s server
	ts := s.start(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("added_after") {
		case "":
			page(w, "2026-01-01T00:00:01.000000Z", `{"more":true,"objects":[`+indicator(1)+`]}`)
		case "2026-01-01T00:00:01.000000Z":
			page(w, "2026-01-01T00:00:02.000000Z", `{"more":false,"objects":[`+indicator(2)+`]}`)
		default:
			t.Errorf("query %s", r.URL.RawQuery)
		}
	})
	c, _ := taxii.New(taxii.Options{Token: "tok"})
	got, _, err := collect(t, c, ts.URL+"/c/", time.Time{})
	if err != nil || len(got) != 2 || s.auth[0] != "Bearer tok" {
		t.Fatalf("%v %v %v", got, err, s.auth)
	}
}

func TestPollRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request)
		opts    taxii.Options
		check   func(error) bool
	}{
		{"wrong media type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{}`)
		}, taxii.Options{}, func(err error) bool {
			return errors.Is(err, taxii.ErrProtocol) && strings.Contains(err.Error(), "application/json")
		}},
		{"TAXII error", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", taxii.MediaType)
			w.WriteHeader(403)
			fmt.Fprint(w, `{"title":"forbidden","description":"no access to c1","http_status":"403"}`)
		}, taxii.Options{}, func(err error) bool {
			var te *taxii.Error
			return errors.As(err, &te) && te.Status == 403 && te.Description == "no access to c1"
		}},
		{"more forever", func(w http.ResponseWriter, r *http.Request) {
			page(w, "", `{"more":true,"next":"again","objects":[`+indicator(1)+`]}`)
		}, taxii.Options{MaxPages: 3}, func(err error) bool {
			return errors.Is(err, taxii.ErrProtocol) && strings.Contains(err.Error(), "more than 3 pages")
		}},
		{"more without a way on", func(w http.ResponseWriter, r *http.Request) {
			page(w, "", `{"more":true,"objects":[`+indicator(1)+`]}`)
		}, taxii.Options{}, func(err error) bool {
			return errors.Is(err, taxii.ErrProtocol) && strings.Contains(err.Error(), "without next")
		}},
		{"malformed object", func(w http.ResponseWriter, r *http.Request) {
			page(w, "", `{"more":false,"objects":[{"type":"indicator","id":"indicator--1"}]}`)
		}, taxii.Options{}, func(err error) bool {
			return errors.Is(err, stix.ErrMalformed) && strings.Contains(err.Error(), "object 0")
		}},
		{"oversized", func(w http.ResponseWriter, r *http.Request) {
			page(w, "", `{"more":false,"objects":[`+indicator(1)+`,`+indicator(2)+`]}`)
		}, taxii.Options{MaxResponseBytes: 300}, func(err error) bool {
			return errors.Is(err, stix.ErrMalformed) && strings.Contains(err.Error(), "over 300 bytes")
		}},
		{"slow", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // answers only when the client gives up
		}, taxii.Options{Timeout: 50 * time.Millisecond}, func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s server
			ts := s.start(t, tc.handler)
			c, err := taxii.New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = collect(t, c, ts.URL+"/c/", time.Time{})
			if err == nil || !tc.check(err) {
				t.Fatalf("error %v", err)
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	if _, err := taxii.New(taxii.Options{Auth: 7}); err == nil {
		t.Error("unknown auth accepted")
	}
	if _, err := taxii.New(taxii.Options{MaxPages: -1}); err == nil {
		t.Error("negative bound accepted")
	}
}
