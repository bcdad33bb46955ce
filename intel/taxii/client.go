// Package taxii is a TAXII 2.1 client: discovery, API roots, collections,
// and polling a collection's objects page by page into STIX entries
// (intel/stix). It is what the feed fetcher uses to pull a TAXII feed.
//
// A Client holds no goroutine; every call takes a context and ends with
// it or with the client's timeout. Responses are bounded in size, and a
// poll in pages.
package taxii

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/meshward/meshward/intel/stix"
)

// MediaType is TAXII 2.1's media type, sent in Accept.
const MediaType = "application/taxii+json;version=2.1"

// Defaults of Options.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 32 << 20
	DefaultMaxPages         = 10000
	DefaultPageLimit        = 1000
	maxErrorBody            = 64 << 10
	maxSmallBody            = 1 << 20 // discovery, API root, collections
)

// ErrProtocol is wrapped by errors about what the server answered: a
// wrong media type, a malformed body, a page past the bounds.
var ErrProtocol = errors.New("taxii protocol")

// Auth is how the token is presented.
type Auth int

const (
	// AuthBearer sends "Authorization: Bearer <token>".
	AuthBearer Auth = iota
	// AuthBasic sends the token as the Basic password, with Username.
	AuthBasic
)

// Options configures a Client; zero fields take their defaults.
type Options struct {
	// HTTPClient sends the requests; nil: a client of its own. Its
	// Timeout, if set, applies as well.
	HTTPClient *http.Client
	// Token is presented as Auth says; "" sends no credentials.
	Token    string
	Auth     Auth
	Username string // for AuthBasic; "" means "meshward"
	// Timeout bounds each request, body included.
	Timeout time.Duration
	// MaxResponseBytes bounds each response body.
	MaxResponseBytes int64
	// MaxPages bounds the pages of one Poll.
	MaxPages int
	// PageLimit is the limit asked of the server for each page.
	PageLimit int
}

// Client talks to one TAXII 2.1 server.
type Client struct {
	opts Options
	hc   *http.Client
}

// New returns a client.
func New(opts Options) (*Client, error) {
	if opts.Timeout < 0 || opts.MaxResponseBytes < 0 || opts.MaxPages < 0 || opts.PageLimit < 0 {
		return nil, errors.New("taxii: negative bound in options")
	}
	if opts.Auth != AuthBearer && opts.Auth != AuthBasic {
		return nil, fmt.Errorf("taxii: unknown auth %d", opts.Auth)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxResponseBytes == 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.MaxPages == 0 {
		opts.MaxPages = DefaultMaxPages
	}
	if opts.PageLimit == 0 {
		opts.PageLimit = DefaultPageLimit
	}
	if opts.Username == "" {
		opts.Username = "meshward"
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{opts: opts, hc: hc}, nil
}

// Error is an error answered by the server, with TAXII's error message
// when it sent one.
type Error struct {
	Status      int
	URL         string
	Title       string
	Description string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("taxii: %s: HTTP %d", e.URL, e.Status)
	if e.Title != "" {
		msg += ": " + e.Title
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// Discovery is a server's discovery resource.
type Discovery struct {
	Title       string   `json:"title"`
	Description string   `json:"description,omitempty"`
	Default     string   `json:"default,omitempty"`
	APIRoots    []string `json:"api_roots,omitempty"`
}

// APIRoot is an API root's information.
type APIRoot struct {
	Title            string   `json:"title"`
	Versions         []string `json:"versions"`
	MaxContentLength int64    `json:"max_content_length"`
}

// Collection is one collection of an API root.
type Collection struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Description string   `json:"description,omitempty"`
	CanRead     bool     `json:"can_read"`
	CanWrite    bool     `json:"can_write"`
	MediaTypes  []string `json:"media_types,omitempty"`
}

// get sends a GET and returns the response of a 200 whose media type is
// TAXII's, its body bounded by limit; the caller closes the body.
func (c *Client) get(ctx context.Context, u string, limit int64) (*http.Response, io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("taxii: %w", err)
	}
	req.Header.Set("Accept", MediaType)
	if c.opts.Token != "" {
		if c.opts.Auth == AuthBasic {
			req.SetBasicAuth(c.opts.Username, c.opts.Token)
		} else {
			req.Header.Set("Authorization", "Bearer "+c.opts.Token)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("taxii: GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		e := &Error{Status: resp.StatusCode, URL: u}
		var body struct {
			Title       string `json:"title"`
			Description string `json:"description"`
		}
		if json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&body) == nil {
			e.Title, e.Description = body.Title, body.Description
		}
		return nil, nil, e
	}
	ct := strings.ReplaceAll(strings.ToLower(resp.Header.Get("Content-Type")), " ", "")
	if !strings.HasPrefix(ct, "application/taxii+json") {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("%w: %s: content type %q, want %s", ErrProtocol, u, ct, MediaType)
	}
	return resp, struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, limit), resp.Body}, nil
}

// getJSON fetches a small resource into v.
func (c *Client) getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	_, body, err := c.get(ctx, u, min(maxSmallBody, c.opts.MaxResponseBytes)+1)
	if err != nil {
		return err
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("taxii: read %s: %w", u, err)
	}
	if int64(len(b)) > min(maxSmallBody, c.opts.MaxResponseBytes) {
		return fmt.Errorf("%w: %s: response over %d bytes", ErrProtocol, u, min(maxSmallBody, c.opts.MaxResponseBytes))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrProtocol, u, err)
	}
	return nil
}

// Discover reads the discovery resource at u (https://host/taxii2/).
func (c *Client) Discover(ctx context.Context, u string) (Discovery, error) {
	var d Discovery
	err := c.getJSON(ctx, u, &d)
	return d, err
}

// APIRoot reads an API root's information.
func (c *Client) APIRoot(ctx context.Context, apiRoot string) (APIRoot, error) {
	var r APIRoot
	err := c.getJSON(ctx, withSlash(apiRoot), &r)
	return r, err
}

// Collections lists an API root's collections.
func (c *Client) Collections(ctx context.Context, apiRoot string) ([]Collection, error) {
	var r struct {
		Collections []Collection `json:"collections"`
	}
	err := c.getJSON(ctx, withSlash(apiRoot)+"collections/", &r)
	return r.Collections, err
}

// CollectionURL is the URL of a collection of an API root.
func CollectionURL(apiRoot, id string) string {
	return withSlash(apiRoot) + "collections/" + url.PathEscape(id) + "/"
}

func withSlash(u string) string {
	if !strings.HasSuffix(u, "/") {
		return u + "/"
	}
	return u
}

// PollResult sums up a poll.
type PollResult struct {
	Pages   int
	Objects int
	Entries int
	// Skipped counts the objects that yielded no entry, by type.
	Skipped map[string]int
	// LastAdded is the date_added of the last object received (from
	// X-TAXII-Date-Added-Last), to pass as addedAfter next time; zero
	// when nothing came.
	LastAdded time.Time
}

// Poll reads the objects of the collection at collectionURL added after
// addedAfter (zero: all of them), page by page, following next while the
// server says more, and calls fn with each entry. It stops at fn's first
// error, at a malformed page (stix.ErrMalformed, naming the object), at
// an error from the server (*Error), or past Options.MaxPages. Entries
// already handed to fn stay handed: a caller wanting all or nothing
// collects them and applies them when Poll returns nil; one resuming
// later passes the result's LastAdded.
func (c *Client) Poll(ctx context.Context, collectionURL string, addedAfter time.Time, fn func(stix.Entry) error) (PollResult, error) {
	var res PollResult
	next := ""
	after := addedAfter
	for {
		if res.Pages >= c.opts.MaxPages {
			return res, fmt.Errorf("%w: more than %d pages", ErrProtocol, c.opts.MaxPages)
		}
		q := url.Values{}
		q.Set("limit", strconv.Itoa(c.opts.PageLimit))
		if !after.IsZero() {
			q.Set("added_after", after.UTC().Format("2006-01-02T15:04:05.000000Z"))
		}
		if next != "" {
			q.Set("next", next)
		}
		u := withSlash(collectionURL) + "objects/?" + q.Encode()
		env, last, st, err := c.page(ctx, u, fn)
		res.Pages++
		res.Objects += st.Objects
		res.Entries += st.Entries
		for k, n := range st.Skipped {
			if res.Skipped == nil {
				res.Skipped = make(map[string]int)
			}
			res.Skipped[k] += n
		}
		if !last.IsZero() {
			res.LastAdded = last
		}
		if err != nil {
			return res, err
		}
		if !env.More {
			return res, nil
		}
		switch {
		case env.Next != "":
			next = env.Next
		case !last.IsZero() && last.After(after):
			// A server without next pages by added_after.
			next, after = "", last
		default:
			return res, fmt.Errorf("%w: %s: more without next nor a later X-TAXII-Date-Added-Last", ErrProtocol, u)
		}
		if st.Objects == 0 {
			return res, fmt.Errorf("%w: %s: an empty page that says more", ErrProtocol, u)
		}
	}
}

// page reads one page of objects.
func (c *Client) page(ctx context.Context, u string, fn func(stix.Entry) error) (stix.Envelope, time.Time, stix.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	resp, body, err := c.get(ctx, u, c.opts.MaxResponseBytes+1)
	if err != nil {
		return stix.Envelope{}, time.Time{}, stix.Stats{}, err
	}
	defer body.Close()
	var last time.Time
	if h := resp.Header.Get("X-TAXII-Date-Added-Last"); h != "" {
		if last, err = time.Parse(time.RFC3339Nano, h); err != nil {
			return stix.Envelope{}, time.Time{}, stix.Stats{}, fmt.Errorf("%w: %s: X-TAXII-Date-Added-Last %q", ErrProtocol, u, h)
		}
	}
	env, st, err := stix.Reader{MaxBytes: c.opts.MaxResponseBytes}.ReadEnvelope(body, fn)
	if err != nil {
		return env, last, st, fmt.Errorf("taxii: page %s: %w", u, err)
	}
	return env, last, st, nil
}
