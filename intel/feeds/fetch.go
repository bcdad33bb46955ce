package feeds

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Fetch results, the values of the result label of
// meshward_feed_fetch_total.
const (
	ResultOK          = "ok"
	ResultNotModified = "not_modified"
	ResultHTTPStatus  = "http_status" // an answer other than 200 or 304
	ResultNetwork     = "network"     // connection refused, reset, TLS failure…
	ResultTimeout     = "timeout"
	ResultTooLarge    = "too_large"
	ResultLocal       = "local_error" // a local file missing or unreadable
)

// FetchResults lists every result, for metrics.
var FetchResults = []string{ResultOK, ResultNotModified, ResultHTTPStatus, ResultNetwork, ResultTimeout, ResultTooLarge, ResultLocal, ResultParseError, ResultPublishError}

// FetchError is a failed fetch and its result class.
type FetchError struct {
	Source string
	Result string
	Err    error
}

func (e *FetchError) Error() string { return "fetch " + e.Source + ": " + e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }

// ResultOf names the result of a fetch error (ResultOK for nil).
func ResultOf(err error) string {
	if err == nil {
		return ResultOK
	}
	var fe *FetchError
	if errors.As(err, &fe) {
		return fe.Result
	}
	return ResultNetwork
}

// Validators are what a source said of its last version: a later fetch
// sends them back (If-None-Match, If-Modified-Since) and is answered "not
// modified" when nothing changed. For a local file, ETag holds its
// modification time and size.
type Validators struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// Defaults of a Fetcher.
const (
	DefaultFetchTimeout = 2 * time.Minute
	DefaultMaxBytes     = 256 << 20
)

// Fetcher brings feeds in from HTTPS URLs and local files, each body
// copied to a temporary file so that it can be read twice (check, then
// publish) and is bounded in size.
type Fetcher struct {
	// Client makes the requests; nil means one with TLS 1.2 or later and
	// the usual dial and handshake timeouts, following only redirects to
	// HTTPS.
	Client *http.Client
	// Timeout bounds one fetch, body included (DefaultFetchTimeout).
	Timeout time.Duration
	// MaxBytes bounds the body (DefaultMaxBytes); for a MISP feed, all
	// its files together.
	MaxBytes int64
	// TempDir holds the copies ("" means os.TempDir()).
	TempDir string
	// UserAgent is sent with every request.
	UserAgent string
}

// Fetched is what a fetch brought: a temporary copy of the feed (a file,
// or a directory for a MISP feed) that Remove deletes.
type Fetched struct {
	NotModified bool
	// Path is the copy: a file, or for a MISP feed a directory holding
	// manifest.json and the event files.
	Path       string
	Size       int64
	Validators Validators
	temp       bool
}

// Remove deletes the temporary copy.
func (f *Fetched) Remove() error {
	if f == nil || !f.temp || f.Path == "" {
		return nil
	}
	return os.RemoveAll(f.Path)
}

// IsURL reports whether src is an HTTPS URL rather than a path.
func IsURL(src string) bool { return strings.HasPrefix(strings.ToLower(src), "https://") }

// CheckURL checks that src is an absolute HTTPS URL without credentials.
func CheckURL(src string) error {
	u, err := url.Parse(src)
	if err != nil {
		return err
	}
	if u.Scheme != "https" || u.Host == "" {
		return errors.New("want an absolute https:// URL")
	}
	if u.User != nil {
		return errors.New("credentials in the URL are not allowed")
	}
	return nil
}

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return defaultClient
}

var defaultClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConns:          8,
		IdleConnTimeout:       90 * time.Second,
	},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("more than 5 redirects")
		}
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to %s: only https is followed", req.URL.Scheme)
		}
		return nil
	},
}

func (f *Fetcher) maxBytes() int64 {
	if f.MaxBytes > 0 {
		return f.MaxBytes
	}
	return DefaultMaxBytes
}

func (f *Fetcher) timeout() time.Duration {
	if f.Timeout > 0 {
		return f.Timeout
	}
	return DefaultFetchTimeout
}

// Fetch brings the feed at src (an HTTPS URL or a file path) unless it is
// unchanged since prev.
func (f *Fetcher) Fetch(ctx context.Context, src string, prev Validators) (*Fetched, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	if IsURL(src) {
		out, err := os.CreateTemp(f.TempDir, "meshward-feed-*")
		if err != nil {
			return nil, &FetchError{Source: src, Result: ResultLocal, Err: err}
		}
		fe := &Fetched{Path: out.Name(), temp: true}
		nm, v, n, err := f.get(ctx, src, prev, out, f.maxBytes())
		if cerr := out.Close(); err == nil && cerr != nil {
			err = &FetchError{Source: src, Result: ResultLocal, Err: cerr}
		}
		if err != nil || nm {
			fe.Remove()
			if err != nil {
				return nil, err
			}
			return &Fetched{NotModified: true, Validators: prev}, nil
		}
		fe.Size, fe.Validators = n, v
		return fe, nil
	}
	return f.copyFile(src, prev)
}

// copyFile copies a local feed unless its modification time and size are
// those of prev.
func (f *Fetcher) copyFile(src string, prev Validators) (*Fetched, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, &FetchError{Source: src, Result: ResultLocal, Err: err}
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, &FetchError{Source: src, Result: ResultLocal, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return nil, &FetchError{Source: src, Result: ResultLocal, Err: errors.New("not a regular file")}
	}
	v := Validators{ETag: fmt.Sprintf("file:%d:%d", fi.ModTime().UnixNano(), fi.Size())}
	if prev.ETag == v.ETag {
		return &Fetched{NotModified: true, Validators: v}, nil
	}
	if fi.Size() > f.maxBytes() {
		return nil, &FetchError{Source: src, Result: ResultTooLarge, Err: fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, fi.Size(), f.maxBytes())}
	}
	out, err := os.CreateTemp(f.TempDir, "meshward-feed-*")
	if err != nil {
		return nil, &FetchError{Source: src, Result: ResultLocal, Err: err}
	}
	fe := &Fetched{Path: out.Name(), temp: true, Validators: v}
	n, err := io.Copy(out, io.LimitReader(in, f.maxBytes()+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > f.maxBytes() {
		err = fmt.Errorf("%w: grew past %d bytes while read", ErrTooLarge, f.maxBytes())
	}
	if err != nil {
		fe.Remove()
		res := ResultLocal
		if errors.Is(err, ErrTooLarge) {
			res = ResultTooLarge
		}
		return nil, &FetchError{Source: src, Result: res, Err: err}
	}
	fe.Size = n
	return fe, nil
}

// get makes one conditional GET and writes the body to w, at most limit
// bytes; notModified is true on 304.
func (f *Fetcher) get(ctx context.Context, src string, prev Validators, w io.Writer, limit int64) (notModified bool, v Validators, n int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return false, v, 0, &FetchError{Source: src, Result: ResultNetwork, Err: err}
	}
	if prev.ETag != "" {
		req.Header.Set("If-None-Match", prev.ETag)
	}
	if prev.LastModified != "" {
		req.Header.Set("If-Modified-Since", prev.LastModified)
	}
	if f.UserAgent != "" {
		req.Header.Set("User-Agent", f.UserAgent)
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return false, v, 0, &FetchError{Source: src, Result: netResult(ctx, err), Err: err}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return true, prev, 0, nil
	case http.StatusOK:
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return false, v, 0, &FetchError{Source: src, Result: ResultHTTPStatus, Err: fmt.Errorf("HTTP status %s", resp.Status)}
	}
	if resp.ContentLength > limit {
		return false, v, 0, &FetchError{Source: src, Result: ResultTooLarge, Err: fmt.Errorf("%w: Content-Length %d, limit %d", ErrTooLarge, resp.ContentLength, limit)}
	}
	n, err = io.Copy(w, io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return false, v, n, &FetchError{Source: src, Result: netResult(ctx, err), Err: fmt.Errorf("read body: %w", err)}
	}
	if n > limit {
		return false, v, n, &FetchError{Source: src, Result: ResultTooLarge, Err: fmt.Errorf("%w: body over %d bytes", ErrTooLarge, limit)}
	}
	v = Validators{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
	if len(v.ETag) > 512 {
		v.ETag = ""
	}
	if len(v.LastModified) > 64 {
		v.LastModified = ""
	}
	return false, v, n, nil
}

func netResult(ctx context.Context, err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		return ResultTimeout
	}
	return ResultNetwork
}

// FetchMISP brings a MISP feed: manifest.json (conditionally), then every
// event file it lists, all within MaxBytes together. A local feed
// directory is read in place; its manifest's modification time and size
// are its validators.
func (f *Fetcher) FetchMISP(ctx context.Context, src string, prev Validators) (*Fetched, error) {
	if !IsURL(src) {
		fi, err := os.Stat(filepath.Join(src, "manifest.json"))
		if err != nil {
			return nil, &FetchError{Source: src, Result: ResultLocal, Err: err}
		}
		v := Validators{ETag: fmt.Sprintf("file:%d:%d", fi.ModTime().UnixNano(), fi.Size())}
		return &Fetched{NotModified: v.ETag == prev.ETag, Path: src, Validators: v}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	dir, err := os.MkdirTemp(f.TempDir, "meshward-misp-*")
	if err != nil {
		return nil, &FetchError{Source: src, Result: ResultLocal, Err: err}
	}
	fe := &Fetched{Path: dir, temp: true}
	fail := func(err error) (*Fetched, error) {
		fe.Remove()
		return nil, err
	}
	base := strings.TrimSuffix(src, "/")
	budget := f.maxBytes()
	fetchTo := func(name string, prev Validators) (bool, Validators, error) {
		out, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return false, Validators{}, &FetchError{Source: src, Result: ResultLocal, Err: err}
		}
		nm, v, n, err := f.get(ctx, base+"/"+name, prev, out, budget)
		out.Close()
		budget -= n
		fe.Size += n
		return nm, v, err
	}
	nm, v, err := fetchTo("manifest.json", prev)
	if err != nil {
		return fail(err)
	}
	if nm {
		fe.Remove()
		return &Fetched{NotModified: true, Validators: prev}, nil
	}
	fe.Validators = v
	mf, err := os.Open(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return fail(&FetchError{Source: src, Result: ResultLocal, Err: err})
	}
	var manifest map[string]json.RawMessage
	err = decodeLimited(mf, MaxMISPManifest, &manifest)
	mf.Close()
	if err != nil {
		// The parser reports it with its position.
		return fe, nil
	}
	for id := range manifest {
		if !ValidUUID(id) {
			return fe, nil // likewise
		}
		if _, _, err := fetchTo(id+".json", Validators{}); err != nil {
			return fail(err)
		}
	}
	return fe, nil
}

// Backoff spaces the retries of a failing feed: the delay doubles from
// Base with every failure up to Max, with full jitter in its upper half
// so that nodes restarted together do not fetch in step.
type Backoff struct {
	Base, Max time.Duration
	// Rand returns a number in [0, 1); nil means math/rand/v2.
	Rand func() float64
}

// Delay is the wait before the retry that follows failures consecutive
// failures (failures ≥ 1): in [d/2, d) with d = min(Max, Base·2^(failures-1)).
func (b Backoff) Delay(failures int) time.Duration {
	if failures < 1 {
		failures = 1
	}
	d := b.Base
	for i := 1; i < failures && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	return d/2 + time.Duration(r()*float64(d/2))
}
