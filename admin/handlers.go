package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// Limits on list queries.
const (
	defaultLimit = 100
	maxLimit     = 10000
	// iocScan is how many of the most recent sightings the indicator
	// list and the detections list are computed from.
	iocScan    = 10000
	maxNameLen = 64
)

func getOpenAPI(_ *Server, _ *call) (any, error) {
	return rawBody{contentType: "application/yaml", b: openAPI}, nil
}

func getStatus(s *Server, c *call) (any, error) {
	st, err := s.opts.Node.Status(c.r.Context())
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if st.Node.Version == "" {
		st.Node.Version = s.opts.Version
	}
	return st, nil
}

func getMembers(s *Server, c *call) (any, error) {
	ms, err := s.opts.Node.Members(c.r.Context())
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	return nonNil(ms), nil
}

func deleteMember(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	ctx := c.r.Context()
	ms, err := s.opts.Node.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	if !slices.ContainsFunc(ms, func(m Member) bool { return m.ID == id }) {
		return nil, fmt.Errorf("member %s: %w", id, ErrNotFound)
	}
	if err := s.opts.Node.RemoveMember(ctx, id); err != nil {
		return nil, fmt.Errorf("remove member %s: %w", id, err)
	}
	return map[string]string{"removed": id}, nil
}

func getPeers(s *Server, c *call) (any, error) {
	ps, err := s.opts.Node.Peers(c.r.Context())
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	return nonNil(ps), nil
}

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
		for _, p := range s.opts.Node.MeshPolicies(now) {
			out = append(out, PolicyView{Policy: p, Scope: ScopeMesh})
		}
	}
	if scope != ScopeMesh {
		for _, p := range s.opts.Node.LocalDecisions(now) {
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

// decode reads a JSON request body strictly.
func decode(c *call, v any) error {
	dec := json.NewDecoder(c.r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body over %d bytes", ErrInvalid, maxBody)
		}
		return fmt.Errorf("%w: decode body: %v", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON body", ErrInvalid)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing data after the JSON body", ErrInvalid)
	}
	return nil
}

// decodeOptional is decode for a body that may be empty.
func decodeOptional(c *call, v any) error {
	b, err := io.ReadAll(c.r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body over %d bytes", ErrInvalid, maxBody)
		}
		return fmt.Errorf("%w: read body: %v", ErrInvalid, err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	c.r.Body = io.NopCloser(bytes.NewReader(b))
	return decode(c, v)
}

// parseIndicator reads an indicator as an operator writes it.
func parseIndicator(value, typ string) (intel.Indicator, error) {
	var ind intel.Indicator
	var err error
	if typ != "" {
		ind, err = intel.NewIndicator(intel.IndicatorType(strings.ToLower(typ)), strings.TrimSpace(value))
	} else {
		ind, err = intel.ParseIndicator(value)
	}
	if err != nil {
		return intel.Indicator{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return ind, nil
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

func postPolicy(s *Server, c *call) (any, error) {
	var req PolicyRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	switch req.Action {
	case intel.ActionBlock, intel.ActionAllow:
	default:
		return nil, fmt.Errorf("%w: action %q (want block or allow)", ErrInvalid, req.Action)
	}
	c.detail = "action=" + string(req.Action)
	p, err := s.newPolicy(c, req, req.Action)
	if err != nil {
		return nil, err
	}
	if err := s.opts.Node.ProposePolicy(c.r.Context(), p); err != nil {
		return nil, fmt.Errorf("propose %s of %s: %w", p.Action, p.Indicator.Value, err)
	}
	return PolicyView{Policy: p, Scope: ScopeMesh}, nil
}

func deletePolicy(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	if !slices.ContainsFunc(s.opts.Node.MeshPolicies(s.now()), func(p intel.Policy) bool { return p.ID == id }) {
		return nil, fmt.Errorf("mesh policy %s: %w", id, ErrNotFound)
	}
	if err := s.opts.Node.RevokePolicy(c.r.Context(), id); err != nil {
		return nil, fmt.Errorf("revoke policy %s: %w", id, err)
	}
	return map[string]string{"revoked": id}, nil
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
	if err := s.opts.Node.PutLocalDecision(c.r.Context(), p); err != nil {
		return nil, fmt.Errorf("local block of %s: %w", p.Indicator.Value, err)
	}
	return PolicyView{Policy: p, Scope: ScopeLocal}, nil
}

func deleteLocalDecision(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	if !slices.ContainsFunc(s.opts.Node.LocalDecisions(s.now()), func(p intel.Policy) bool { return p.ID == id }) {
		return nil, fmt.Errorf("local decision %s: %w", id, ErrNotFound)
	}
	if err := s.opts.Node.DeleteLocalDecision(c.r.Context(), id); err != nil {
		return nil, fmt.Errorf("delete local decision %s: %w", id, err)
	}
	return map[string]string{"deleted": id}, nil
}

// limit reads the limit query parameter.
func limit(c *call) (int, error) {
	v := c.r.URL.Query().Get("limit")
	if v == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, fmt.Errorf("%w: limit %q: want 1 to %d", ErrInvalid, v, maxLimit)
	}
	return n, nil
}

// policyTags lists the policies in force on exactly ind, as
// "scope:action".
func policyTags(ps []PolicyView, ind intel.Indicator) []string {
	var out []string
	for _, p := range ps {
		if p.Indicator == ind {
			out = append(out, p.Scope+":"+string(p.Action))
		}
	}
	return out
}

// summarize folds sightings into one IOC per indicator.
func summarize(recs []store.SightingRecord, ps []PolicyView) []IOC {
	type acc struct {
		ioc       IOC
		origins   map[string]bool
		detectors map[string]bool
	}
	m := make(map[string]*acc)
	var order []string
	for _, r := range recs {
		k := r.Sighting.Indicator.Key()
		a, ok := m[k]
		if !ok {
			a = &acc{ioc: IOC{Indicator: r.Sighting.Indicator}, origins: map[string]bool{}, detectors: map[string]bool{}}
			m[k] = a
			order = append(order, k)
		}
		a.ioc.Sightings++
		a.origins[r.Origin] = true
		if d := r.Sighting.Detector; d != "" {
			a.detectors[d] = true
		}
		if fs := r.Sighting.FirstSeen; a.ioc.FirstSeen.IsZero() || fs.Before(a.ioc.FirstSeen) {
			a.ioc.FirstSeen = fs
		}
		if ls := r.Sighting.LastSeen; ls.After(a.ioc.LastSeen) {
			a.ioc.LastSeen = ls
		}
	}
	out := make([]IOC, 0, len(order))
	for _, k := range order {
		a := m[k]
		a.ioc.Origins = len(a.origins)
		for d := range a.detectors {
			a.ioc.Detectors = append(a.ioc.Detectors, d)
		}
		sort.Strings(a.ioc.Detectors)
		a.ioc.Policies = policyTags(ps, a.ioc.Indicator)
		out = append(out, a.ioc)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(out[j].LastSeen) {
			return out[i].LastSeen.After(out[j].LastSeen)
		}
		return out[i].Indicator.Key() < out[j].Indicator.Key()
	})
	return out
}

func getIOCs(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	q := c.r.URL.Query()
	text := strings.ToLower(strings.TrimSpace(q.Get("q")))
	typ := intel.IndicatorType(strings.ToLower(q.Get("type")))
	if typ != "" {
		if _, err := intel.NewIndicator(typ, "x"); err != nil && strings.Contains(err.Error(), "unknown type") {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	recs, err := s.opts.Node.Sightings(c.r.Context(), iocScan)
	if err != nil {
		return nil, fmt.Errorf("sightings: %w", err)
	}
	ps, err := s.policies("")
	if err != nil {
		return nil, err
	}
	out := []IOC{}
	for _, ioc := range summarize(recs, ps) {
		if typ != "" && ioc.Indicator.Type != typ {
			continue
		}
		if text != "" && !strings.Contains(strings.ToLower(ioc.Indicator.Value), text) {
			continue
		}
		out = append(out, ioc)
		if len(out) >= n {
			break
		}
	}
	return out, nil
}

func getIOC(s *Server, c *call) (any, error) {
	ind, err := parseIndicator(c.r.PathValue("indicator"), c.r.URL.Query().Get("type"))
	if err != nil {
		return nil, err
	}
	recs, err := s.opts.Node.SightingsFor(c.r.Context(), ind)
	if err != nil {
		return nil, fmt.Errorf("sightings of %s: %w", ind.Value, err)
	}
	ps, err := s.policies("")
	if err != nil {
		return nil, err
	}
	reports, err := s.reportsOf(c, ind)
	if err != nil {
		return nil, err
	}
	d := IOCDetail{IOC: IOC{Indicator: ind}, SightingList: []Sighting{}, PolicyList: []PolicyView{}, ReportList: reports}
	if sum := summarize(recs, ps); len(sum) > 0 {
		d.IOC = sum[0]
	}
	d.IOC.Policies = policyTags(ps, ind)
	for i := len(recs) - 1; i >= 0; i-- { // newest first
		d.SightingList = append(d.SightingList, sightingFrom(recs[i]))
	}
	for _, p := range ps {
		if p.Indicator.Overlaps(ind) {
			d.PolicyList = append(d.PolicyList, p)
		}
	}
	if len(d.SightingList) == 0 && len(d.PolicyList) == 0 && len(d.ReportList) == 0 {
		return nil, fmt.Errorf("indicator %s: %w", ind.Value, ErrNotFound)
	}
	return d, nil
}

func getSightings(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	recs, err := s.opts.Node.Sightings(c.r.Context(), n)
	if err != nil {
		return nil, fmt.Errorf("sightings: %w", err)
	}
	out := make([]Sighting, 0, len(recs))
	for _, r := range recs {
		out = append(out, sightingFrom(r))
	}
	return out, nil
}

// detections returns this node's own sightings among the most recent
// iocScan, newest first, with their IDs.
func (s *Server) detections(c *call) ([]Detection, error) {
	recs, err := s.opts.Node.Sightings(c.r.Context(), iocScan)
	if err != nil {
		return nil, fmt.Errorf("sightings: %w", err)
	}
	self := s.opts.Node.ID()
	var out []Detection
	for _, r := range recs {
		if r.Origin == self {
			out = append(out, Detection{ID: DetectionID(r.Origin, r.Seq), Sighting: sightingFrom(r)})
		}
	}
	return out, nil
}

// withAcks fills in the acknowledgements of ds.
func (s *Server) withAcks(ds []Detection) error {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	acks, err := s.opts.Store.AcksFor(ids)
	if err != nil {
		return err
	}
	for i := range ds {
		if a, ok := acks[ds[i].ID]; ok {
			ds[i].Acknowledged, ds[i].Ack = true, ackFrom(a)
		}
	}
	return nil
}

// getDetections lists this node's own sightings among the most recent
// ones, each with whether and by whom it was acknowledged; the
// acknowledged query parameter (true or false) keeps only those that are,
// or are not.
func getDetections(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	var want *bool
	if v := c.r.URL.Query().Get("acknowledged"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%w: acknowledged %q: want true or false", ErrInvalid, v)
		}
		want = &b
	}
	ds, err := s.detections(c)
	if err != nil {
		return nil, err
	}
	if want == nil && len(ds) > n {
		ds = ds[:n]
	}
	if err := s.withAcks(ds); err != nil {
		return nil, err
	}
	if want != nil {
		ds = slices.DeleteFunc(ds, func(d Detection) bool { return d.Acknowledged != *want })
		if len(ds) > n {
			ds = ds[:n]
		}
	}
	return nonNil(ds), nil
}

// detection returns the detection with the given ID among the most recent
// ones, or ErrNotFound.
func (s *Server) detection(c *call, id string) (Detection, error) {
	ds, err := s.detections(c)
	if err != nil {
		return Detection{}, err
	}
	for _, d := range ds {
		if d.ID == id {
			return d, nil
		}
	}
	return Detection{}, fmt.Errorf("detection %s: %w", id, ErrNotFound)
}

// postAck acknowledges a detection, once: a second acknowledgement is a
// conflict that names the first.
func postAck(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	var req AckRequest
	if err := decodeOptional(c, &req); err != nil {
		return nil, err
	}
	if len(req.Note) > store.MaxAckNoteLen || !utf8.ValidString(req.Note) {
		return nil, fmt.Errorf("%w: note: want at most %d bytes of UTF-8", ErrInvalid, store.MaxAckNoteLen)
	}
	c.detail = fmt.Sprintf("note=%q", req.Note)
	d, err := s.detection(c, id)
	if err != nil {
		return nil, err
	}
	rec := store.AckRecord{Detection: id, By: c.who.name, TokenID: c.who.id, Note: req.Note, At: s.now().UTC()}
	if err := s.opts.Store.CreateAck(rec); err != nil {
		if errors.Is(err, store.ErrExists) {
			if prev, perr := s.opts.Store.Ack(id); perr == nil {
				return nil, fmt.Errorf("%w: detection %s already acknowledged by %s at %s",
					ErrRefused, id, prev.By, prev.At.Format(time.RFC3339))
			}
		}
		return nil, fmt.Errorf("acknowledge detection %s: %w", id, err)
	}
	d.Acknowledged, d.Ack = true, ackFrom(rec)
	return d, nil
}

// deleteAck withdraws the acknowledgement of a detection.
func deleteAck(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	prev, err := s.opts.Store.Ack(id)
	if err != nil {
		return nil, fmt.Errorf("acknowledgement of detection %s: %w", id, err)
	}
	c.detail = fmt.Sprintf("was by=%s note=%q", prev.By, prev.Note)
	if err := s.opts.Store.DeleteAck(id); err != nil {
		return nil, fmt.Errorf("withdraw acknowledgement of detection %s: %w", id, err)
	}
	return map[string]string{"unacknowledged": id}, nil
}

func getAudit(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	es, err := s.opts.Store.Audit(n)
	if err != nil {
		return nil, err
	}
	return nonNil(es), nil
}

func tokenFrom(r store.TokenRecord) Token {
	return Token{ID: r.ID, Name: r.Name, Role: Role(r.Role), CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy}
}

func getTokens(s *Server, _ *call) (any, error) {
	recs, err := s.opts.Store.Tokens()
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(recs))
	for _, r := range recs {
		out = append(out, tokenFrom(r))
	}
	return out, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]*$`)

func postToken(s *Server, c *call) (any, error) {
	var req TokenRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	role, err := ParseRole(string(req.Role))
	if err != nil {
		return nil, err
	}
	c.detail = "role=" + string(role) + " name=" + req.Name
	if req.Name != "" && (len(req.Name) > maxNameLen || !validName.MatchString(req.Name)) {
		return nil, fmt.Errorf("%w: name %q: want 1 to %d letters, digits, '.', '_', '@' or '-'", ErrInvalid, req.Name, maxNameLen)
	}
	if req.Name == LocalAdminName {
		return nil, fmt.Errorf("%w: name %q is reserved", ErrInvalid, req.Name)
	}
	ct, err := s.createToken(req.Name, role, c.who.actor())
	if err != nil {
		return nil, err
	}
	c.target = ct.ID
	return ct, nil
}

// createToken makes and stores a new token; name "" means token-<id>.
func (s *Server) createToken(name string, role Role, by string) (CreatedToken, error) {
	for range 3 { // an ID collision is astronomically unlikely; retry anyway
		id, secret, err := newToken()
		if err != nil {
			return CreatedToken{}, err
		}
		n := name
		if n == "" {
			n = "token-" + id[:8]
		}
		rec := store.TokenRecord{ID: id, Name: n, Role: string(role), Hash: hashToken(id, secretOf(secret)),
			CreatedAt: s.now().UTC(), CreatedBy: by}
		err = s.opts.Store.CreateToken(rec)
		if errors.Is(err, store.ErrExists) {
			continue
		}
		if err != nil {
			return CreatedToken{}, fmt.Errorf("create token: %w", err)
		}
		return CreatedToken{Token: tokenFrom(rec), Secret: secret}, nil
	}
	return CreatedToken{}, errors.New("create token: could not find a free ID")
}

// secretOf returns the secret part of a full bearer token made by
// newToken.
func secretOf(bearer string) string {
	_, secret, _ := splitToken(bearer)
	return secret
}

func deleteToken(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	if err := s.opts.Store.DeleteToken(id); err != nil {
		return nil, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return map[string]string{"revoked": id}, nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
