package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/meshward/meshward/query"
)

// QueryService puts one question to every member of the mesh at once
// (package query). It is optional: a Node without it answers 503.
type QueryService interface {
	// MeshQuery asks every member, this node included, and returns one
	// result a member once each has answered or failed or timeout has
	// passed.
	MeshQuery(ctx context.Context, req query.Request, timeout time.Duration) (any, error)
}

// Bounds of GET /v1/query's timeout.
const (
	defaultQueryTimeout = 5 * time.Second
	maxQueryTimeout     = 60 * time.Second
)

// QueryResponse is the body of GET /v1/query.
type QueryResponse struct {
	Kind    string         `json:"kind"`
	Value   string         `json:"value,omitempty"`
	Timeout string         `json:"timeout"`
	Summary map[string]int `json:"summary"`
	// Results is one entry a member: node, site, status (answered,
	// timed_out, unreachable, refused, error), error, answer, ms.
	Results any `json:"results"`
}

// getQuery serves GET /v1/query?kind=indicator|policy|health|compliance&value=...&timeout=5s.
func getQuery(s *Server, c *call) (any, error) {
	qs, ok := s.opts.Node.(QueryService)
	if !ok {
		return nil, fmt.Errorf("%w: this node does not run mesh-wide queries", ErrUnavailable)
	}
	q := c.r.URL.Query()
	req := query.Request{Kind: q.Get("kind")}
	value := q.Get("value")
	switch req.Kind {
	case query.KindIndicator:
		req.Indicator = value
	case query.KindPolicy:
		req.Policy = value
	case query.KindHealth, query.KindCompliance:
		if value != "" {
			return nil, fmt.Errorf("%w: value: a %s query takes none", ErrInvalid, req.Kind)
		}
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	timeout := defaultQueryTimeout
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 || d > maxQueryTimeout {
			return nil, fmt.Errorf("%w: timeout %q: want a duration above 0 and at most %s", ErrInvalid, t, maxQueryTimeout)
		}
		timeout = d
	}
	c.target = req.Kind + " " + value
	res, err := qs.MeshQuery(c.r.Context(), req, timeout)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// QueryResultView is one member's result as the client reads it.
type QueryResultView struct {
	Node   string          `json:"node"`
	Site   string          `json:"site,omitempty"`
	Status string          `json:"status"`
	Error  string          `json:"error,omitempty"`
	Answer json.RawMessage `json:"answer,omitempty"`
	Ms     float64         `json:"ms"`
}

// QueryView is GET /v1/query's body as the client reads it.
type QueryView struct {
	Kind    string            `json:"kind"`
	Value   string            `json:"value,omitempty"`
	Timeout string            `json:"timeout"`
	Summary map[string]int    `json:"summary"`
	Results []QueryResultView `json:"results"`
}

// Query asks the whole mesh through the node (GET /v1/query); timeout 0
// takes the node's default.
func (c *Client) Query(ctx context.Context, kind, value string, timeout time.Duration) (QueryView, error) {
	q := url.Values{"kind": {kind}}
	if value != "" {
		q.Set("value", value)
	}
	if timeout > 0 {
		q.Set("timeout", timeout.String())
	}
	var out QueryView
	return out, c.do(ctx, "GET", "/v1/query", q, nil, &out)
}
