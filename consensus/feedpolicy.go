package consensus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/warninglist"
)

// Feed blocks: an operator-signed feed policy (held in the FSM, set and
// removed by operator commands) turns a feed's signed indicator reports
// into mesh-wide blocks. Any node may propose one; the entry carries the
// report's envelope (the exact bytes signed) and the policy's name, and
// the FSM checks everything from the entry and its state alone:
//
//   - the feed policy exists and is enabled at this index;
//   - the envelope opens (signature), carries a valid indicator report,
//     and was not sent after the entry's time (plus skew);
//   - its signer is a roster member and a permitted publisher of the
//     policy (those it names, or the voters when it names none);
//   - the report's source, confidence, type and validity at now meet the
//     policy (intel.FeedPolicy.CheckReport);
//   - the block is of the report's indicator, lasts at most the policy's
//     TTL and not past the report's validity, and is not created later
//     than now (plus skew);
//   - the floors, the warninglist (built-in and the operators'
//     extensions held here), protected ranges, members' addresses and
//     allows do not veto it.
//
// The block's reason, author and evidence are the FSM's, derived from the
// report. A refusal is counted under command "feed-block" with its reason.
//
// The built-in warninglist is part of the binary: a release that changes
// it changes what the FSM accepts, and is upgraded like a log format.

// CmdFeedBlock is a block promoted from a feed's indicator report by a
// feed policy (Command.Policy + Command.Feed). Part of the log format.
const CmdFeedBlock CommandType = 11

// FeedProof is what proves a feed block: the feed policy's name and the
// signed indicator report envelope, the exact bytes signed.
type FeedProof struct {
	Policy string `json:"policy"`
	Report []byte `json:"report"`
}

// maxWarninglistExtensions bounds the entries operators may add.
const maxWarninglistExtensions = 4096

// feedState is the FSM's feed policies and warninglist extensions. The
// zero value is empty; the maps are made on first write. list is the
// extensions indexed, rebuilt on every change (it is immutable, so a
// snapshot shares it).
type feedState struct {
	policies map[string]intel.FeedPolicy
	warn     map[string]warninglist.Entry // by indicator key
	list     *warninglist.List
}

func (s feedState) clone() feedState {
	return feedState{policies: maps.Clone(s.policies), warn: maps.Clone(s.warn), list: s.list}
}

// sortedPolicies returns the feed policies by name.
func (s feedState) sortedPolicies() []intel.FeedPolicy {
	out := make([]intel.FeedPolicy, 0, len(s.policies))
	for _, name := range slices.Sorted(maps.Keys(s.policies)) {
		out = append(out, s.policies[name])
	}
	return out
}

// sortedWarn returns the extensions by indicator key.
func (s feedState) sortedWarn() []warninglist.Entry {
	out := make([]warninglist.Entry, 0, len(s.warn))
	for _, k := range slices.Sorted(maps.Keys(s.warn)) {
		out = append(out, s.warn[k])
	}
	return out
}

// restoreFeedState rebuilds the feed state of a snapshot.
func restoreFeedState(policies []intel.FeedPolicy, warn []warninglist.Entry) (feedState, error) {
	var s feedState
	for _, p := range policies {
		if err := p.Validate(); err != nil {
			return s, fmt.Errorf("feed policy %q: %w", p.Name, err)
		}
		if s.policies == nil {
			s.policies = map[string]intel.FeedPolicy{}
		}
		s.policies[p.Name] = p
	}
	for _, e := range warn {
		if s.warn == nil {
			s.warn = map[string]warninglist.Entry{}
		}
		s.warn[e.Indicator.Key()] = e
	}
	if err := s.reindex(); err != nil {
		return s, err
	}
	return s, nil
}

// reindex rebuilds list from warn.
func (s *feedState) reindex() error {
	if len(s.warn) == 0 {
		s.list = nil
		return nil
	}
	l, err := warninglist.New(s.sortedWarn())
	if err != nil {
		return fmt.Errorf("warninglist: %w", err)
	}
	s.list = l
	return nil
}

// warninglisted returns the entry, built-in or added, that vetoes ind.
func (s feedState) warninglisted(ind intel.Indicator) (warninglist.Entry, bool) {
	return warninglist.Check(ind, warninglist.Builtin(), s.list)
}

// isFeedPublisher reports whether member m may publish p's feed: it is
// named by the policy, or the policy names none and m is a voter.
func isFeedPublisher(p intel.FeedPolicy, m Member) bool {
	if len(p.Publishers) == 0 {
		return m.Voter
	}
	return slices.Contains(p.Publishers, m.ID)
}

// validateFeedBlock is Command.validate for CmdFeedBlock.
func (c *Command) validateFeedBlock() *RefusalError {
	bad := func(format string, args ...any) *RefusalError {
		return refuse(c.Type, "malformed", ErrInvalidCommand, format, args...)
	}
	if c.Policy == nil {
		return bad("feed-block without a policy")
	}
	if err := c.Policy.Validate(); err != nil {
		return bad("%v", err)
	}
	if c.Policy.Action != intel.ActionBlock {
		return refuse(c.Type, "action", ErrRefused, "a feed policy may only block, not %s", c.Policy.Action)
	}
	if c.Feed == nil || len(c.Feed.Report) == 0 {
		return refuse(c.Type, "no_proof", ErrRefused, "a feed block of %s carries no signed report", c.Policy.Indicator)
	}
	if err := intel.ValidFeedPolicyName(c.Feed.Policy); err != nil {
		return bad("feed policy: %v", err)
	}
	if len(c.Feed.Report) > intel.MaxEnvelopeSize {
		return refuse(c.Type, "proof_malformed", ErrInvalidCommand, "report is %d bytes, limit %d", len(c.Feed.Report), intel.MaxEnvelopeSize)
	}
	return nil
}

// feedBlock checks a feed block against the state at now (see above).
func (f *fsm) feedBlock(c *Command, now time.Time) (func(), *RefusalError) {
	const t = CmdFeedBlock
	fp, ok := f.feeds.policies[c.Feed.Policy]
	if !ok {
		return nil, refuse(t, "unknown_feed_policy", ErrRefused, "no feed policy %q", c.Feed.Policy)
	}
	env, err := f.verify.Open(c.Feed.Report)
	if err != nil {
		if errors.Is(err, intel.ErrBadSignature) {
			return nil, refuse(t, "bad_signature", ErrRefused, "report: %v", err)
		}
		return nil, refuse(t, "proof_malformed", ErrRefused, "report: %v", err)
	}
	if env.Kind != intel.KindIndicator {
		return nil, refuse(t, "proof_kind", ErrRefused, "the proof carries a %s, not an indicator report", env.Kind)
	}
	r, err := intel.DecodeIndicatorReport(env)
	if err != nil {
		return nil, refuse(t, "proof_malformed", ErrRefused, "report: %v", err)
	}
	origin := env.OriginID()
	m, ok := f.roster[origin]
	if !ok {
		return nil, refuse(t, "not_member", ErrRefused, "the report is signed by %s, not a member", shortID(origin))
	}
	if !isFeedPublisher(fp, m) {
		who := "the voters"
		if len(fp.Publishers) > 0 {
			who = fmt.Sprintf("%d named publishers", len(fp.Publishers))
		}
		return nil, refuse(t, "not_publisher", ErrRefused, "the report is signed by %s, not a publisher of feed policy %s (%s)", shortID(origin), fp.Name, who)
	}
	if reason, err := fp.CheckReport(r, now); err != nil {
		return nil, refuse(t, reason, ErrRefused, "%v", err)
	}
	if env.Time.After(now.Add(signedSkew)) {
		return nil, refuse(t, "proof_time", ErrRefused, "the report was sent at %s, after the entry's time %s",
			env.Time.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	p := *c.Policy
	if p.Indicator != r.Indicator {
		return nil, refuse(t, "wrong_indicator", ErrRefused, "the report names %s, the block names %s", r.Indicator.Key(), p.Indicator.Key())
	}
	if p.ExpiresAt.IsZero() || p.ExpiresAt.Sub(p.CreatedAt) > fp.TTL() || p.CreatedAt.After(now.Add(signedSkew)) ||
		(!r.ValidUntil.IsZero() && p.ExpiresAt.After(r.ValidUntil)) {
		return nil, refuse(t, "ttl_cap", ErrRefused, "a block of feed policy %s lasts at most %s from now and not past the report's validity (created %s, expires %s)",
			fp.Name, fp.TTL(), p.CreatedAt.Format(time.RFC3339), p.ExpiresAt.Format(time.RFC3339))
	}
	if err := f.rules.Floors.CheckBlock(p.Indicator, false); err != nil {
		return nil, refuse(t, "floor", ErrRefused, "%w", err)
	}
	if e, ok := f.feeds.warninglisted(p.Indicator); ok {
		return nil, refuse(t, "warninglist", ErrRefused, "%s is warninglisted by %s (%s)", p.Indicator, e.Indicator, e.List)
	}
	if rerr := f.blockVeto(t, p.Indicator, now); rerr != nil {
		return nil, rerr
	}
	p.Author = "feed:" + fp.Name
	p.Reason = fmt.Sprintf("feed %s, policy %s, confidence %d", r.Source, fp.Name, r.Confidence)
	p.Evidence = []intel.Evidence{{Origin: origin, Seq: env.Seq, Detector: "feed:" + fp.Name, Seen: env.Time}}
	return func() { f.store(p, now) }, nil
}

// feedOperatorOp checks the feed policy and warninglist operations and
// returns their change.
func (f *fsm) feedOperatorOp(cmd intel.OperatorCommand) (func(), *RefusalError) {
	const t = CmdOperator
	s := &f.feeds
	switch cmd.Op {
	case intel.OpSetFeedPolicy:
		p := *cmd.FeedPolicy
		p.Types, p.Publishers = slices.Clone(p.Types), slices.Clone(p.Publishers)
		if _, exists := s.policies[p.Name]; !exists && len(s.policies) >= intel.MaxFeedPolicies {
			return nil, refuse(t, "too_many_feed_policies", ErrRefused, "the mesh holds %d feed policies, limit %d", len(s.policies), intel.MaxFeedPolicies)
		}
		return func() {
			if s.policies == nil {
				s.policies = map[string]intel.FeedPolicy{}
			}
			s.policies[p.Name] = p
		}, nil
	case intel.OpRemoveFeedPolicy:
		name := cmd.FeedPolicyName
		if _, ok := s.policies[name]; !ok {
			return nil, refuse(t, "unknown_feed_policy", ErrRefused, "no feed policy %q", name)
		}
		return func() { delete(s.policies, name) }, nil
	case intel.OpWarninglistAdd:
		ind := *cmd.Indicator
		if _, exists := s.warn[ind.Key()]; !exists && len(s.warn) >= maxWarninglistExtensions {
			return nil, refuse(t, "warninglist_full", ErrRefused, "the warninglist holds %d added entries, limit %d", len(s.warn), maxWarninglistExtensions)
		}
		e := warninglist.Entry{Indicator: ind, List: warninglist.OperatorList, Reason: cmd.Reason}
		next := feedState{warn: maps.Clone(s.warn)}
		if next.warn == nil {
			next.warn = map[string]warninglist.Entry{}
		}
		next.warn[ind.Key()] = e
		if err := next.reindex(); err != nil {
			return nil, refuse(t, "malformed", ErrInvalidCommand, "%v", err)
		}
		return func() { s.warn, s.list = next.warn, next.list }, nil
	case intel.OpWarninglistRemove:
		key := cmd.Indicator.Key()
		if _, ok := s.warn[key]; !ok {
			return nil, refuse(t, "unknown_warninglist_entry", ErrRefused, "%s is not among the entries operators added", cmd.Indicator)
		}
		next := feedState{warn: maps.Clone(s.warn)}
		delete(next.warn, key)
		if err := next.reindex(); err != nil {
			return nil, refuse(t, "malformed", ErrInvalidCommand, "%v", err)
		}
		return func() { s.warn, s.list = next.warn, next.list }, nil
	}
	return nil, refuse(t, "malformed", ErrInvalidCommand, "unknown op %q", cmd.Op)
}

// --- reading and proposing ---------------------------------------------------

// FeedPolicies returns the mesh's feed policies, by name.
func (c *Consensus) FeedPolicies() []intel.FeedPolicy {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.feeds.sortedPolicies()
}

// Warninglist returns the entries operators added to the warninglist, by
// indicator key (the built-in ones are warninglist.Builtin()).
func (c *Consensus) Warninglist() []warninglist.Entry {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.feeds.sortedWarn()
}

// Warninglisted returns the entry, built-in or added by the operators,
// that keeps ind from ever being blocked by a feed policy.
func (c *Consensus) Warninglisted(ind intel.Indicator) (warninglist.Entry, bool) {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.feeds.warninglisted(ind)
}

// FeedPublisher reports whether node may publish the feed of p now: a
// roster member it names, or a voter when it names none.
func (c *Consensus) FeedPublisher(p intel.FeedPolicy, node string) bool {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	m, ok := c.fsm.roster[node]
	return ok && isFeedPublisher(p, m)
}

// ProposeFeedBlock commits block, promoted by feed policy policy from the
// signed indicator report report (its exact bytes), from any node. As
// with Propose, cancelling ctx stops the wait, not the commit.
func (c *Consensus) ProposeFeedBlock(ctx context.Context, policy string, report []byte, block intel.Policy) error {
	return c.Propose(ctx, Command{Type: CmdFeedBlock, At: block.CreatedAt, Policy: &block, Feed: &FeedProof{Policy: policy, Report: report}})
}
