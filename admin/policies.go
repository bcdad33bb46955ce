package admin

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
)

// PolicyPage is one page of GET /v1/policies: mesh-wide policies in ID
// order, then local decisions in ID order. NextCursor, when not empty,
// is passed as the cursor parameter to get the next page.
type PolicyPage struct {
	Items      []PolicyView `json:"items"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// A cursor names the scope and the last policy ID of the page before,
// base64url-encoded ("mesh:" or "local:" and the ID) so that clients
// treat it as opaque.
func encodeCursor(scope, after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(scope + ":" + after))
}

var cursorID = regexp.MustCompile(`^[0-9a-f]{0,64}$`)

// decodeCursor reads a cursor made by encodeCursor.
func decodeCursor(cur string) (scope, after string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", rejected(reasonBadCursor, fmt.Errorf("%w: cursor %q: %s; pass the next_cursor of the previous page, or no cursor to start", ErrInvalid, cur, why))
	}
	if len(cur) > 128 {
		return bad("too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(cur)
	if err != nil {
		return bad("not base64url")
	}
	scope, after, ok := strings.Cut(string(b), ":")
	if !ok || (scope != ScopeMesh && scope != ScopeLocal) {
		return bad("names no scope")
	}
	if !cursorID.MatchString(after) {
		return bad("names no policy ID")
	}
	return scope, after, nil
}

func checkScope(scope string) error {
	switch scope {
	case "", ScopeMesh, ScopeLocal:
		return nil
	}
	return fmt.Errorf("%w: scope %q (want mesh or local)", ErrInvalid, scope)
}

// policyPage returns up to n policies of scope ("" for both, mesh-wide
// first) after the cursor cur ("" to start). It never copies every
// mesh-wide policy: the node pages them.
func (s *Server) policyPage(scope, cur string, n int) (PolicyPage, error) {
	if err := checkScope(scope); err != nil {
		return PolicyPage{}, err
	}
	from, after := ScopeMesh, ""
	if scope == ScopeLocal {
		from = ScopeLocal
	}
	if cur != "" {
		cs, ca, err := decodeCursor(cur)
		if err != nil {
			return PolicyPage{}, err
		}
		if scope != "" && cs != scope {
			return PolicyPage{}, rejected(reasonBadCursor, fmt.Errorf("%w: cursor %q is a page of scope %s, not %s", ErrInvalid, cur, cs, scope))
		}
		from, after = cs, ca
	}
	now := s.now()
	page := PolicyPage{Items: []PolicyView{}}
	if from == ScopeMesh {
		ps, next := s.policySvc.MeshPolicyPage(after, n, now)
		for _, p := range ps {
			page.Items = append(page.Items, PolicyView{Policy: p, Scope: ScopeMesh})
		}
		if next != "" {
			page.NextCursor = encodeCursor(ScopeMesh, next)
			return page, nil
		}
		if scope == ScopeMesh {
			return page, nil
		}
		from, after = ScopeLocal, ""
	}
	// Local decisions: a node holds few, and its store reads them whole.
	local := s.policySvc.LocalDecisions(now)
	byID := func(a, b intel.Policy) int { return strings.Compare(a.ID, b.ID) }
	if !slices.IsSortedFunc(local, byID) {
		local = slices.SortedFunc(slices.Values(local), byID)
	}
	i, _ := slices.BinarySearchFunc(local, after, func(p intel.Policy, id string) int {
		if p.ID <= id {
			return -1
		}
		return 1
	})
	local = local[i:]
	if room := n - len(page.Items); len(local) > room {
		local = local[:room]
		last := after // a page full of mesh-wide policies: local ones follow
		if room > 0 {
			last = local[room-1].ID
		}
		page.NextCursor = encodeCursor(ScopeLocal, last)
	}
	for _, p := range local {
		page.Items = append(page.Items, PolicyView{Policy: p, Scope: ScopeLocal})
	}
	return page, nil
}

func getPolicies(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	q := c.r.URL.Query()
	page, err := s.policyPage(q.Get("scope"), q.Get("cursor"), n)
	if err != nil {
		return nil, err
	}
	s.nameTechniques(page.Items)
	return page, nil
}

func getPolicy(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	scope := c.r.URL.Query().Get("scope")
	if err := checkScope(scope); err != nil {
		return nil, err
	}
	now := s.now()
	if scope != ScopeLocal {
		if p, ok := s.policySvc.MeshPolicy(id, now); ok {
			v := []PolicyView{{Policy: p, Scope: ScopeMesh}}
			s.nameTechniques(v)
			return v[0], nil
		}
	}
	if scope != ScopeMesh {
		for _, p := range s.policySvc.LocalDecisions(now) {
			if p.ID == id {
				return PolicyView{Policy: p, Scope: ScopeLocal}, nil
			}
		}
	}
	return nil, fmt.Errorf("policy %s: %w", id, ErrNotFound)
}

// policyActions are the actions a policy may take, for looking up the
// policies on one indicator by their IDs (intel.PolicyID).
var policyActions = [...]intel.Action{intel.ActionBlock, intel.ActionAllow, intel.ActionObserve}

// policyIndex finds the policies in force on given indicators without
// copying every mesh-wide policy: mesh-wide ones are looked up by ID,
// local decisions (few) are read once.
type policyIndex struct {
	s     *Server
	now   time.Time
	local map[intel.Indicator][]intel.Policy
}

func (s *Server) policyIndex() *policyIndex {
	x := &policyIndex{s: s, now: s.now(), local: map[intel.Indicator][]intel.Policy{}}
	for _, p := range s.policySvc.LocalDecisions(x.now) {
		x.local[p.Indicator] = append(x.local[p.Indicator], p)
	}
	return x
}

// on returns the policies in force on exactly ind, mesh-wide first.
func (x *policyIndex) on(ind intel.Indicator) []PolicyView {
	var out []PolicyView
	for _, a := range policyActions {
		if p, ok := x.s.policySvc.MeshPolicy(intel.PolicyID(a, ind), x.now); ok && p.Indicator == ind {
			out = append(out, PolicyView{Policy: p, Scope: ScopeMesh})
		}
	}
	for _, p := range x.local[ind] {
		out = append(out, PolicyView{Policy: p, Scope: ScopeLocal})
	}
	return out
}

// covering returns the policies in force on ind and on what covers it:
// the ranges that hold an address or range, the parent domains of a
// domain. Narrower policies (a range inside a range, a subdomain) are not
// looked for: finding them would mean reading every policy.
func (x *policyIndex) covering(ind intel.Indicator) []PolicyView {
	out := x.on(ind)
	if pfx, ok := ind.Prefix(); ok {
		bits := pfx.Bits()
		if ind.Type == intel.CIDR {
			bits-- // the range itself is ind
		}
		for b := bits; b >= 0; b-- {
			wider, err := pfx.Addr().Prefix(b)
			if err != nil {
				continue
			}
			out = append(out, x.on(intel.Indicator{Type: intel.CIDR, Value: wider.String()})...)
		}
		return out
	}
	if ind.Type == intel.Domain {
		for d := ind.Value; ; {
			_, parent, ok := strings.Cut(d, ".")
			if !ok || parent == "" {
				break
			}
			out = append(out, x.on(intel.Indicator{Type: intel.Domain, Value: parent})...)
			d = parent
		}
	}
	return out
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
