package admin

import (
	"fmt"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// policies returns the policies in force, mesh-wide first.
func (s *Server) policies(scope string) ([]PolicyView, error) {
	now := s.now()
	var out []PolicyView
	switch scope {
	case "", ScopeMesh, ScopeLocal:
	default:
		return nil, fmt.Errorf("%w: scope %q (want mesh or local)", ErrInvalid, scope)
	}
	if scope != ScopeLocal {
		for _, p := range s.policySvc.MeshPolicies(now) {
			out = append(out, PolicyView{Policy: p, Scope: ScopeMesh})
		}
	}
	if scope != ScopeMesh {
		for _, p := range s.policySvc.LocalDecisions(now) {
			out = append(out, PolicyView{Policy: p, Scope: ScopeLocal})
		}
	}
	return out, nil
}

func getPolicies(s *Server, c *call) (any, error) {
	ps, err := s.policies(c.r.URL.Query().Get("scope"))
	if err != nil {
		return nil, err
	}
	return nonNil(ps), nil
}

func getPolicy(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	ps, err := s.policies(c.r.URL.Query().Get("scope"))
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.ID == id {
			return p, nil
		}
	}
	return nil, fmt.Errorf("policy %s: %w", id, ErrNotFound)
}

func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: ttl %q: want a non-negative duration such as 30m or 24h", ErrInvalid, s)
	}
	return d, nil
}

// newPolicy builds and validates the policy a request asks for.
func (s *Server) newPolicy(c *call, req PolicyRequest, action intel.Action) (intel.Policy, error) {
	ind, err := parseIndicator(req.Indicator, req.Type)
	if err != nil {
		return intel.Policy{}, err
	}
	c.target = ind.Key()
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		return intel.Policy{}, err
	}
	c.detail = fmt.Sprintf("action=%s ttl=%s reason=%q", action, ttl, req.Reason)
	p := intel.NewPolicy(action, ind, req.Reason, "operator:"+c.who.name, s.now(), ttl)
	if err := p.Validate(); err != nil {
		return intel.Policy{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return p, nil
}

func postLocalDecision(s *Server, c *call) (any, error) {
	var req PolicyRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if req.Action != "" && req.Action != intel.ActionBlock {
		return nil, fmt.Errorf("%w: local decisions are blocks, not %q", ErrInvalid, req.Action)
	}
	p, err := s.newPolicy(c, req, intel.ActionBlock)
	if err != nil {
		return nil, err
	}
	if p.ExpiresAt.IsZero() {
		return nil, fmt.Errorf("%w: a local block needs a positive ttl", ErrInvalid)
	}
	if err := s.policySvc.PutLocalDecision(c.r.Context(), p); err != nil {
		return nil, fmt.Errorf("local block of %s: %w", p.Indicator.Value, err)
	}
	return PolicyView{Policy: p, Scope: ScopeLocal}, nil
}

func deleteLocalDecision(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	if !slices.ContainsFunc(s.policySvc.LocalDecisions(s.now()), func(p intel.Policy) bool { return p.ID == id }) {
		return nil, fmt.Errorf("local decision %s: %w", id, ErrNotFound)
	}
	if err := s.policySvc.DeleteLocalDecision(c.r.Context(), id); err != nil {
		return nil, fmt.Errorf("delete local decision %s: %w", id, err)
	}
	return map[string]string{"deleted": id}, nil
}
