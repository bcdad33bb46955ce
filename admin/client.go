package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
)

// APIError is an error answer of the API.
type APIError struct {
	Status  int    // HTTP status
	Code    string // machine code: unauthorized, forbidden, not_found...
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// ClientOptions configures a Client.
type ClientOptions struct {
	// CAFile is a PEM bundle to verify an HTTPS node's certificate
	// against, instead of the system roots.
	CAFile string
	// Timeout bounds each request; zero means 2 minutes.
	Timeout time.Duration
}

// Client talks to one node's admin API.
type Client struct {
	target string
	base   string
	token  string
	hc     *http.Client
}

// IsUnixTarget reports whether target names a Unix socket rather than an
// https:// URL.
func IsUnixTarget(target string) bool {
	return !strings.HasPrefix(target, "https://") && !strings.HasPrefix(target, "http://")
}

// NewClient returns a client of the node at target: a Unix socket path
// ("unix://" prefix optional) or an https://host:port URL. Plain http is
// refused, so that a token never crosses a network in the clear.
func NewClient(target, token string, opts ClientOptions) (*Client, error) {
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	c := &Client{target: target, token: token}
	switch {
	case strings.HasPrefix(target, "http://"):
		return nil, fmt.Errorf("node %s: plain http is not supported; use https:// or a Unix socket path", target)
	case strings.HasPrefix(target, "https://"):
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("node %q: want https://host:port", target)
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s holds no PEM certificate", opts.CAFile)
			}
			tc.RootCAs = pool
		}
		c.base = "https://" + u.Host
		c.hc = &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
	default:
		path := strings.TrimPrefix(target, "unix://")
		if path == "" {
			return nil, errors.New("node: empty socket path")
		}
		c.target = path
		c.base = "http://meshward"
		d := &net.Dialer{Timeout: 5 * time.Second}
		c.hc = &http.Client{Timeout: timeout, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", path)
			},
		}}
	}
	return c, nil
}

// Target is the socket path or URL the client talks to.
func (c *Client) Target() string { return c.target }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// do sends one request and decodes a JSON answer into out (if non-nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach node at %s: %w", c.target, unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.target, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb errorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb = errorBody{Error: strings.TrimSpace(string(b)), Code: http.StatusText(resp.StatusCode)}
		}
		return &APIError{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer from %s: %w", c.target, err)
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func limitQuery(limit int) url.Values {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.do(ctx, "GET", "/v1/status", nil, nil, &st)
}

// Members lists the roster.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var ms []Member
	return ms, c.do(ctx, "GET", "/v1/members", nil, nil, &ms)
}

// Peers lists connected peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var ps []Peer
	return ps, c.do(ctx, "GET", "/v1/peers", nil, nil, &ps)
}

// PolicyQuery selects one page of policies.
type PolicyQuery struct {
	// Scope is mesh, local or "" for both (mesh-wide first).
	Scope string
	// Limit is the page size, 1 to 10000; 0 means the server's default
	// (100).
	Limit int
	// Cursor is the NextCursor of the page before; "" for the first page.
	Cursor string
}

// PolicyPage returns one page of the policies in force.
func (c *Client) PolicyPage(ctx context.Context, pq PolicyQuery) (PolicyPage, error) {
	q := limitQuery(pq.Limit)
	if pq.Scope != "" {
		q.Set("scope", pq.Scope)
	}
	if pq.Cursor != "" {
		q.Set("cursor", pq.Cursor)
	}
	var p PolicyPage
	return p, c.do(ctx, "GET", "/v1/policies", q, nil, &p)
}

// EachPolicy walks the policies in force page by page (pageSize each; 0
// means the server's default), calling fn for each in turn; it stops at
// the first error fn returns, or when fn returns ErrStop, with no error.
func (c *Client) EachPolicy(ctx context.Context, scope string, pageSize int, fn func(PolicyView) error) error {
	q := PolicyQuery{Scope: scope, Limit: pageSize}
	for {
		page, err := c.PolicyPage(ctx, q)
		if err != nil {
			return err
		}
		for _, p := range page.Items {
			if err := fn(p); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		if page.NextCursor == "" {
			return nil
		}
		if page.NextCursor == q.Cursor {
			return fmt.Errorf("node at %s returned the same cursor twice", c.target)
		}
		q.Cursor = page.NextCursor
	}
}

// ErrStop, returned by the function EachPolicy calls, ends the walk
// without an error.
var ErrStop = errors.New("stop")

// Policies lists every policy in force, walking all pages; scope "" means
// both scopes. It holds them all in memory: EachPolicy does not.
func (c *Client) Policies(ctx context.Context, scope string) ([]PolicyView, error) {
	var ps []PolicyView
	return ps, c.EachPolicy(ctx, scope, maxLimit, func(p PolicyView) error {
		ps = append(ps, p)
		return nil
	})
}

// Policy returns one policy.
func (c *Client) Policy(ctx context.Context, id, scope string) (PolicyView, error) {
	q := url.Values{}
	if scope != "" {
		q.Set("scope", scope)
	}
	var p PolicyView
	return p, c.do(ctx, "GET", "/v1/policies/"+url.PathEscape(id), q, nil, &p)
}

// LocalBlock stores a local decision on the node.
func (c *Client) LocalBlock(ctx context.Context, req PolicyRequest) (PolicyView, error) {
	var p PolicyView
	return p, c.do(ctx, "POST", "/v1/local-decisions", nil, req, &p)
}

// DeleteLocal deletes a local decision.
func (c *Client) DeleteLocal(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/local-decisions/"+url.PathEscape(id), nil, nil, nil)
}

// IOCQuery selects indicators.
type IOCQuery struct {
	Text  string // case-insensitive substring of the value
	Type  string
	Limit int
	// Sort is "" or "last_seen" (most recently seen first) or "risk"
	// (highest risk first).
	Sort string
	// At, when set, is the time risk is computed at (the server's clock
	// otherwise).
	At time.Time
}

// IOCs lists indicators.
func (c *Client) IOCs(ctx context.Context, iq IOCQuery) ([]IOC, error) {
	q := limitQuery(iq.Limit)
	if iq.Text != "" {
		q.Set("q", iq.Text)
	}
	if iq.Type != "" {
		q.Set("type", iq.Type)
	}
	if iq.Sort != "" {
		q.Set("sort", iq.Sort)
	}
	if !iq.At.IsZero() {
		q.Set("at", iq.At.UTC().Format(time.RFC3339Nano))
	}
	var out []IOC
	return out, c.do(ctx, "GET", "/v1/iocs", q, nil, &out)
}

// IOC returns one indicator in detail; typ "" guesses the type.
func (c *Client) IOC(ctx context.Context, value, typ string) (IOCDetail, error) {
	return c.IOCAt(ctx, value, typ, time.Time{})
}

// IOCAt is IOC with its risk computed at at (zero: the server's clock).
func (c *Client) IOCAt(ctx context.Context, value, typ string, at time.Time) (IOCDetail, error) {
	q := url.Values{}
	if typ != "" {
		q.Set("type", typ)
	}
	if !at.IsZero() {
		q.Set("at", at.UTC().Format(time.RFC3339Nano))
	}
	var d IOCDetail
	return d, c.do(ctx, "GET", "/v1/iocs/"+url.PathEscape(value), q, nil, &d)
}

// ReportQuery selects indicator reports.
type ReportQuery struct {
	Limit int // 1 to 1000; 0 means the server's default (100)
	// Active, when set, keeps only the reports that are (true) or are not
	// (false) valid now.
	Active *bool
}

// Reports lists the indicator reports the node holds, newest first.
func (c *Client) Reports(ctx context.Context, rq ReportQuery) ([]Report, error) {
	q := limitQuery(rq.Limit)
	if rq.Active != nil {
		q.Set("active", strconv.FormatBool(*rq.Active))
	}
	var out []Report
	return out, c.do(ctx, "GET", "/v1/reports", q, nil, &out)
}

// PublishReport publishes an indicator report mesh-wide.
func (c *Client) PublishReport(ctx context.Context, req ReportRequest) (Report, error) {
	var out Report
	return out, c.do(ctx, "POST", "/v1/reports", nil, req, &out)
}

// Sightings lists stored sightings, newest first.
func (c *Client) Sightings(ctx context.Context, limit int) ([]Sighting, error) {
	var out []Sighting
	return out, c.do(ctx, "GET", "/v1/sightings", limitQuery(limit), nil, &out)
}

// DetectionQuery selects detections.
type DetectionQuery struct {
	Limit int
	// Acknowledged, when set, keeps only the detections that are (true)
	// or are not (false) acknowledged.
	Acknowledged *bool
}

// Detections lists this node's own detections, newest first, with their
// acknowledgements.
func (c *Client) Detections(ctx context.Context, dq DetectionQuery) ([]Detection, error) {
	q := limitQuery(dq.Limit)
	if dq.Acknowledged != nil {
		q.Set("acknowledged", strconv.FormatBool(*dq.Acknowledged))
	}
	var out []Detection
	return out, c.do(ctx, "GET", "/v1/detections", q, nil, &out)
}

// Ack acknowledges a detection, with an optional note.
func (c *Client) Ack(ctx context.Context, id, note string) (Detection, error) {
	var out Detection
	return out, c.do(ctx, "POST", "/v1/detections/"+url.PathEscape(id)+"/ack", nil, AckRequest{Note: note}, &out)
}

// Unack withdraws the acknowledgement of a detection.
func (c *Client) Unack(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/detections/"+url.PathEscape(id)+"/ack", nil, nil, nil)
}

// Audit lists the audit trail, newest first.
func (c *Client) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	var out []AuditEntry
	return out, c.do(ctx, "GET", "/v1/audit", limitQuery(limit), nil, &out)
}

// Tokens lists tokens.
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out []Token
	return out, c.do(ctx, "GET", "/v1/tokens", nil, nil, &out)
}

// CreateToken creates a token; the secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (CreatedToken, error) {
	var out CreatedToken
	return out, c.do(ctx, "POST", "/v1/tokens", nil, req, &out)
}

// RevokeToken revokes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/tokens/"+url.PathEscape(id), nil, nil, nil)
}

// Operator returns the mesh's ID, operators and join tokens.
func (c *Client) Operator(ctx context.Context) (OperatorState, error) {
	var out OperatorState
	return out, c.do(ctx, "GET", "/v1/operator", nil, nil, &out)
}

// SubmitOperator commits an operator-signed command mesh-wide (see
// intel.SignOperatorCommand).
func (c *Client) SubmitOperator(ctx context.Context, s intel.OperatorSigned) (OperatorResult, error) {
	var out OperatorResult
	return out, c.do(ctx, "POST", "/v1/operator/commands", nil, s, &out)
}

// Profile fetches the runtime profile name (a name of runtime/pprof,
// "profile" for CPU or "trace" for an execution trace) and writes it to w;
// seconds, when positive, is how long a CPU profile or trace runs (or,
// for the others, the window of a delta profile). It needs an admin
// token. It returns the bytes written.
func (c *Client) Profile(ctx context.Context, name string, seconds int, w io.Writer) (int64, error) {
	u := c.base + "/debug/pprof/" + url.PathEscape(name)
	if seconds > 0 {
		u += "?seconds=" + strconv.Itoa(seconds)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach node at %s: %w", c.target, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb errorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb = errorBody{Error: strings.TrimSpace(string(b)), Code: http.StatusText(resp.StatusCode)}
		}
		return 0, &APIError{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("read profile from %s: %w", c.target, err)
	}
	return n, nil
}

// OpenAPIDoc fetches the node's OpenAPI document.
func (c *Client) OpenAPIDoc(ctx context.Context) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, "GET", "/v1/openapi.yaml", nil, nil, &b)
}

// ReadTokenFile reads a token file as the server writes it.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

// DefaultTokenFile is the token file the CLI reads for a Unix socket
// target: admin.token in the socket's directory.
func DefaultTokenFile(socket string) string {
	return filepath.Join(filepath.Dir(strings.TrimPrefix(socket, "unix://")), DefaultTokenFileName)
}
