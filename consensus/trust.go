package consensus

import (
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
)

// Rules are the mesh's rules of automatic blocking, held in the FSM and
// set by the initialisation entry and by operator commands: a block
// carries the signed sightings of at least MinNodes distinct roster
// members within Window, lasts at most BlockTTL, and crosses no floor.
type Rules struct {
	MinNodes int           `json:"min_nodes"`
	Window   time.Duration `json:"window"`
	BlockTTL time.Duration `json:"block_ttl"`
	Floors   intel.Floors  `json:"floors"`
	// MinRisk, when above 0, is the least risk score (intel/risk, 0..100)
	// an automatic block's proof must reach, computed from the entry
	// alone (sitetrust.go: proofRisk). 0 is off.
	MinRisk int `json:"min_risk,omitempty"`
	// The distributed rule (proof_distributed.go): when
	// DistributedMinSites is above 0, a block may also be proven by
	// partial sightings of at least DistributedMinSites distinct members
	// within Window whose counts, each member's capped at
	// DistributedSiteCap, sum to DistributedThreshold. All 0: off.
	DistributedMinSites  int `json:"distributed_min_sites,omitempty"`
	DistributedThreshold int `json:"distributed_threshold,omitempty"`
	DistributedSiteCap   int `json:"distributed_site_cap,omitempty"`
	// RecidiveDoublings is how many times an automatic block's TTL cap
	// doubles for an indicator the mesh blocked before (recidive.go); 0
	// is off.
	RecidiveDoublings int `json:"recidive_doublings,omitempty"`
}

// DefaultRules are the rules a mesh is founded with unless the founding
// node says otherwise (Config.BootstrapRules).
func DefaultRules() Rules {
	return Rules{MinNodes: 2, Window: 10 * time.Minute, BlockTTL: 24 * time.Hour, Floors: intel.DefaultFloors(),
		RecidiveDoublings: defaultRecidiveDoublings}
}

// Bounds of the rules and of what the FSM holds.
const (
	maxMinNodes     = 64
	maxWindow       = 7 * 24 * time.Hour
	maxBlockTTL     = 30 * 24 * time.Hour
	maxOperators    = 64
	maxJoinTokens   = 256
	maxNonces       = 16384
	maxDeparted     = 1024
	maxProofs       = 64
	meshIDBytes     = 16
	maxOperatorName = intel.MaxOperatorName

	// responderTTLCap bounds what a responder operator may block or allow,
	// and responders may not make a policy without expiry.
	responderTTLCap = 7 * 24 * time.Hour
	// signedSkew is how far a signed time (an operator command's issue
	// time, a proof's envelope time, a leave's issue time) may lie ahead
	// of the FSM's clock.
	signedSkew = time.Minute
	// leaveLife bounds how long a signed leave may wait to be committed.
	leaveLife = 15 * time.Minute
)

// Validate checks that the rules are sane.
func (r Rules) Validate() error {
	switch {
	case r.MinNodes < 1 || r.MinNodes > maxMinNodes:
		return fmt.Errorf("min_nodes %d: want 1..%d", r.MinNodes, maxMinNodes)
	case r.Window <= 0 || r.Window > maxWindow:
		return fmt.Errorf("window %s: want more than 0, at most %s", r.Window, maxWindow)
	case r.BlockTTL <= 0 || r.BlockTTL > maxBlockTTL:
		return fmt.Errorf("block_ttl %s: want more than 0, at most %s", r.BlockTTL, maxBlockTTL)
	case r.MinRisk < 0 || r.MinRisk > 100:
		return fmt.Errorf("min_risk %d: want 0..100", r.MinRisk)
	case r.RecidiveDoublings < 0 || r.RecidiveDoublings > maxRecidiveDoublings:
		return fmt.Errorf("recidive_doublings %d: want 0..%d", r.RecidiveDoublings, maxRecidiveDoublings)
	}
	if err := r.validateDistributed(); err != nil {
		return err
	}
	return r.Floors.Validate()
}

// Operator is one operator key the mesh knows.
type Operator struct {
	KeyID string             `json:"key_id"`
	Key   []byte             `json:"key"`
	Role  intel.OperatorRole `json:"role"`
	Name  string             `json:"name"`
	// AddedAt is the FSM's time when the key was added; AddedBy the key
	// ID of the operator who added it, or "bootstrap".
	AddedAt time.Time `json:"added_at"`
	AddedBy string    `json:"added_by"`
}

// JoinToken is one operator-issued join token: the public half of its key
// (the secret never enters the log), how many joins it admits and has
// admitted, and until when.
type JoinToken struct {
	ID        string    `json:"id"` // intel.JoinTokenID of Key
	Key       []byte    `json:"key"`
	Uses      int       `json:"uses"`
	Used      int       `json:"used"`
	CreatedAt time.Time `json:"created_at"`
	Expires   time.Time `json:"expires"`
	CreatedBy string    `json:"created_by"` // operator key ID
}

// Usable reports whether the token may admit one more node at now.
func (t JoinToken) Usable(now time.Time) bool { return t.Used < t.Uses && now.Before(t.Expires) }

// Init is the mesh initialisation entry, the founding node's first
// command: the mesh's ID, its first operators, its rules and the founding
// node, its first member (a voter, on its own word: the entry that founds
// the mesh is trusted by definition, and every later member needs a join
// token).
type Init struct {
	MeshID    string     `json:"mesh_id"`
	Operators []Operator `json:"operators"`
	Rules     Rules      `json:"rules"`
	Founder   *Member    `json:"founder,omitempty"`
}

func (in *Init) validateMeshID() error {
	if len(in.MeshID) != 2*meshIDBytes || strings.Trim(in.MeshID, "0123456789abcdef") != "" {
		return fmt.Errorf("mesh id %q: want %d lowercase hex digits", in.MeshID, 2*meshIDBytes)
	}
	return nil
}

func (in *Init) validate() error {
	if err := in.validateMeshID(); err != nil {
		return err
	}
	if len(in.Operators) == 0 || len(in.Operators) > maxOperators {
		return fmt.Errorf("%d operators: want 1..%d", len(in.Operators), maxOperators)
	}
	admins := 0
	for i, o := range in.Operators {
		if len(o.Key) != ed25519.PublicKeySize || o.KeyID != intel.OperatorKeyID(o.Key) {
			return fmt.Errorf("operator %d: want an ed25519 key and its key id", i)
		}
		if !o.Role.Valid() || len(o.Name) > maxOperatorName {
			return fmt.Errorf("operator %d: role %q or name of %d bytes refused", i, o.Role, len(o.Name))
		}
		if o.Role == intel.OperatorAdmin {
			admins++
		}
	}
	if admins == 0 {
		return errors.New("no admin operator")
	}
	if err := in.Rules.Validate(); err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	if m := in.Founder; m != nil {
		switch {
		case m.ID == "" || len(m.ID) > maxIDLen:
			return fmt.Errorf("founder: want an id of 1 to %d bytes", maxIDLen)
		case len(m.Site) > maxSiteLen || len(m.Addrs) > maxMemberAddrs || len(m.Observed) > maxObserved:
			return fmt.Errorf("founder %s: site of %d bytes, %d addresses, %d observed: limits %d, %d, %d",
				m.ID, len(m.Site), len(m.Addrs), len(m.Observed), maxSiteLen, maxMemberAddrs, maxObserved)
		}
	}
	return nil
}

// LeaveRequest is a member's own request to leave the mesh for good,
// signed with its node key over LeaveMessage.
type LeaveRequest struct {
	Node   string    `json:"node"`
	Issued time.Time `json:"issued"`
	Sig    []byte    `json:"sig"`
}

// LeaveSigningDomain separates leave signatures from everything else a
// node key signs.
const LeaveSigningDomain = "meshward/leave/v1\x00"

// LeaveMessage is what a node signs to leave mesh: the domain, the mesh,
// the node and the moment, so that a leave is good for one mesh, one node
// and one membership (it must be issued after the node was admitted).
func LeaveMessage(mesh, node string, issued time.Time) []byte {
	return []byte(LeaveSigningDomain + mesh + "\x00" + node + "\x00" + issued.UTC().Format(time.RFC3339Nano))
}

// ErrRefused: the mesh's rules refuse the command (a missing or bad proof,
// an unknown operator, a role, a floor, a replay). Every refusal is a
// *RefusalError naming its reason.
var ErrRefused = errors.New("refused by the mesh")

// RefusalError is the FSM's (or the proposer's early) refusal of a
// command, with the reason it is counted under.
type RefusalError struct {
	Command CommandType
	Reason  string
	Err     error
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("%s refused (%s): %v", e.Command, e.Reason, e.Err)
}

func (e *RefusalError) Unwrap() error { return e.Err }

// RefusalReason returns the reason of a refusal returned by this package,
// on this node or relayed from another, or "".
func RefusalReason(err error) string {
	if r, ok := errors.AsType[*RefusalError](err); ok {
		return r.Reason
	}
	if r, ok := errors.AsType[*remoteError](err); ok {
		return r.reason
	}
	return ""
}

// refuse builds a refusal: sentinel is what callers branch on
// (ErrRefused, ErrProtected, ErrAllowed, ErrInvalidCommand, ...).
func refuse(t CommandType, reason string, sentinel error, format string, args ...any) *RefusalError {
	return &RefusalError{Command: t, Reason: reason, Err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}

// refusals counts refusals by command and reason. The label sets are
// finite (command types times the reasons in this package), so the map
// stays small.
type refusals struct {
	mu sync.Mutex
	n  map[[2]string]uint64
}

func (r *refusals) add(command, reason string) {
	r.mu.Lock()
	if r.n == nil {
		r.n = map[[2]string]uint64{}
	}
	r.n[[2]string{command, reason}]++
	r.mu.Unlock()
}

func (r *refusals) snapshot() map[[2]string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.n)
}

var refusedDesc = prometheus.NewDesc("meshward_consensus_refused_total",
	"Commands refused by the FSM or, before they reached the log, by the proposing path; by command and reason.",
	[]string{"command", "reason"}, nil)

// refusalCollector exposes the refusal counts.
type refusalCollector struct{ r *refusals }

func (c refusalCollector) Describe(ch chan<- *prometheus.Desc) { ch <- refusedDesc }

func (c refusalCollector) Collect(ch chan<- prometheus.Metric) {
	for k, v := range c.r.snapshot() {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(v), k[0], k[1])
	}
}

// RefusalCounts returns how many commands this node refused, keyed
// "command/reason" (for example "put-policy/too_few_signers"): in its FSM
// and, before they reached the log, on its proposing path.
func (c *Consensus) RefusalCounts() map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range c.fsm.refused.snapshot() {
		out[k[0]+"/"+k[1]] += v
	}
	return out
}

// Collector exposes meshward_consensus_refused_total{command,reason} and
// the site trust counters (sitetrust.go) for the node's registry.
func (c *Consensus) Collector() prometheus.Collector {
	return collectors{refusalCollector{&c.fsm.refused}, siteTrustCollector{c.fsm}}
}

// --- queries of the trust state ------------------------------------------

// MeshID is the mesh's ID ("" until the initialisation entry is applied).
func (c *Consensus) MeshID() string {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.meshID
}

// Rules returns the mesh's rules of automatic blocking (zero until the
// initialisation entry is applied).
func (c *Consensus) Rules() Rules {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.rules
}

// Operators returns the mesh's operator keys, sorted by key ID.
func (c *Consensus) Operators() []Operator {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	out := make([]Operator, 0, len(c.fsm.operators))
	for _, id := range slices.Sorted(maps.Keys(c.fsm.operators)) {
		o := c.fsm.operators[id]
		o.Key = slices.Clone(o.Key)
		out = append(out, o)
	}
	return out
}

// JoinTokens returns the mesh's join tokens, sorted by ID.
func (c *Consensus) JoinTokens() []JoinToken {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	out := make([]JoinToken, 0, len(c.fsm.tokens))
	for _, id := range slices.Sorted(maps.Keys(c.fsm.tokens)) {
		t := c.fsm.tokens[id]
		t.Key = slices.Clone(t.Key)
		out = append(out, t)
	}
	return out
}

// joinToken looks a token up by ID. The admission handler (roster.go)
// checks it with checkJoinToken and, once it admits, spends one use with
// spendJoinToken, both inside Apply.
func (f *fsm) joinToken(id string) (JoinToken, bool) {
	t, ok := f.tokens[id]
	return t, ok
}

// checkJoinToken refuses a token that is unknown, used up or expired at
// now. Caller holds the lock (Apply or a precheck).
func (f *fsm) checkJoinToken(t CommandType, id string, now time.Time) (JoinToken, *RefusalError) {
	tok, ok := f.joinToken(id)
	switch {
	case !ok:
		return JoinToken{}, refuse(t, "unknown_token", ErrBadToken, "no join token %s", id)
	case tok.Used >= tok.Uses:
		return JoinToken{}, refuse(t, "token_used", ErrBadToken, "join token %s is used up (%d of %d)", id, tok.Used, tok.Uses)
	case !now.Before(tok.Expires):
		return JoinToken{}, refuse(t, "token_expired", ErrBadToken, "join token %s expired at %s", id, tok.Expires.Format(time.RFC3339))
	}
	return tok, nil
}

// spendJoinToken consumes one use of a token checked by checkJoinToken.
// Caller holds the write lock inside Apply.
func (f *fsm) spendJoinToken(id string) {
	if t, ok := f.tokens[id]; ok {
		t.Used++
		f.tokens[id] = t
	}
}

// pruneTrust drops what expired at now: nonces past their command's
// expiry, join tokens past theirs.
func (f *fsm) pruneTrust(now time.Time) {
	if !f.nextNonceExpiry.IsZero() && !now.Before(f.nextNonceExpiry) {
		f.nextNonceExpiry = time.Time{}
		for n, exp := range f.nonces {
			if !now.Before(exp) {
				delete(f.nonces, n)
			} else if f.nextNonceExpiry.IsZero() || exp.Before(f.nextNonceExpiry) {
				f.nextNonceExpiry = exp
			}
		}
	}
	for id, t := range f.tokens {
		if !now.Before(t.Expires) {
			delete(f.tokens, id)
		}
	}
}

// addDeparted records that id left or was removed at now, keeping the
// newest maxDeparted records (ties broken by ID, so every replica keeps
// the same).
func (f *fsm) addDeparted(id string, now time.Time) {
	f.departed[id] = now
	if len(f.departed) <= maxDeparted {
		return
	}
	ids := slices.Collect(maps.Keys(f.departed))
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Or(f.departed[a].Compare(f.departed[b]), cmp.Compare(a, b))
	})
	for _, id := range ids[:len(ids)-maxDeparted] {
		delete(f.departed, id)
	}
}

// isDeparted reports whether id left or was removed and has not been
// admitted again.
func (f *fsm) isDeparted(id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.departed[id]
	return ok
}
