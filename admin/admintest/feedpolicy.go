package admintest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/warninglist"
)

var _ admin.FeedPolicySource = (*Node)(nil)

// applyFeed applies the feed policy and warninglist commands as the FSM
// would. Caller holds n.mu.
func (n *Node) applyFeed(c intel.OperatorCommand) error {
	switch c.Op {
	case intel.OpSetFeedPolicy:
		i := slices.IndexFunc(n.feedPolicies, func(p intel.FeedPolicy) bool { return p.Name == c.FeedPolicy.Name })
		if i >= 0 {
			n.feedPolicies[i] = *c.FeedPolicy
			return nil
		}
		n.feedPolicies = append(n.feedPolicies, *c.FeedPolicy)
		slices.SortFunc(n.feedPolicies, func(a, b intel.FeedPolicy) int { return strings.Compare(a.Name, b.Name) })
	case intel.OpRemoveFeedPolicy:
		i := slices.IndexFunc(n.feedPolicies, func(p intel.FeedPolicy) bool { return p.Name == c.FeedPolicyName })
		if i < 0 {
			return fmt.Errorf("%w: no feed policy %q", admin.ErrNotFound, c.FeedPolicyName)
		}
		n.feedPolicies = slices.Delete(n.feedPolicies, i, i+1)
	case intel.OpWarninglistAdd:
		n.warninglist = slices.DeleteFunc(n.warninglist, func(e warninglist.Entry) bool { return e.Indicator == *c.Indicator })
		n.warninglist = append(n.warninglist, warninglist.Entry{Indicator: *c.Indicator, List: warninglist.OperatorList, Reason: c.Reason})
		slices.SortFunc(n.warninglist, func(a, b warninglist.Entry) int { return strings.Compare(a.Indicator.Key(), b.Indicator.Key()) })
	case intel.OpWarninglistRemove:
		i := slices.IndexFunc(n.warninglist, func(e warninglist.Entry) bool { return e.Indicator == *c.Indicator })
		if i < 0 {
			return fmt.Errorf("%w: %s is not among the entries operators added", admin.ErrNotFound, c.Indicator)
		}
		n.warninglist = slices.Delete(n.warninglist, i, i+1)
	}
	return nil
}

// FeedPolicies lists the feed policies committed to the fake, by name.
func (n *Node) FeedPolicies() []intel.FeedPolicy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.feedPolicies)
}

// Warninglist lists the warninglist entries committed to the fake.
func (n *Node) Warninglist() []warninglist.Entry {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.warninglist)
}
