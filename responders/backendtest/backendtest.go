// Package backendtest is the conformance suite every responders.Backend
// must pass. A backend's tests call Run with a fresh, empty instance.
// Register puts a test's own factory in the backend registry for the
// length of one test.
//
// It only reads and writes through the Backend interface, so it runs as
// well against a dry run as against a firewall in a network namespace.
package backendtest

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// Run checks that b, which must start empty, keeps the Backend contract:
// adds and removes show in Current, keyed by Indicator.Key(); adding an
// entry twice and removing an absent one are not errors; an empty Apply
// changes nothing; Current returns a copy. It covers the indicator types
// b supports (all of them unless b implements responders.TypeFilter).
// Run leaves b empty.
func Run(t *testing.T, b responders.Backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if b.Name() == "" {
		t.Error("Name() is empty")
	}
	// Policies are current, so that backends that honour expiry keep them.
	now := time.Now().UTC()
	var inds []intel.Indicator
	for _, c := range []struct {
		typ intel.IndicatorType
		val string
	}{
		{intel.IPv4, "203.0.113.7"},
		{intel.IPv4, "198.51.100.20"},
		{intel.IPv6, "2001:db8::7"},
		{intel.CIDR, "192.0.2.0/24"},
		{intel.Domain, "bad.example.com"},
		{intel.Domain, "evil.example.net"},
	} {
		if f, ok := b.(responders.TypeFilter); ok && !f.Supports(c.typ) {
			continue
		}
		ind, err := intel.NewIndicator(c.typ, c.val)
		if err != nil {
			t.Fatalf("indicator %s: %v", c.val, err)
		}
		inds = append(inds, ind)
	}
	if len(inds) < 2 {
		t.Fatalf("backend %s supports fewer than two of the tested indicator types", b.Name())
	}
	policy := func(ind intel.Indicator) intel.Policy {
		return intel.NewPolicy(intel.ActionBlock, ind, "conformance", "operator:test", now, time.Hour)
	}
	policies := func(inds ...intel.Indicator) []intel.Policy {
		var out []intel.Policy
		for _, ind := range inds {
			out = append(out, policy(ind))
		}
		return out
	}
	expect := func(step string, want ...intel.Indicator) {
		t.Helper()
		got, err := b.Current(ctx)
		if err != nil {
			t.Fatalf("%s: Current: %v", step, err)
		}
		wantMap := make(map[string]intel.Indicator)
		for _, ind := range want {
			wantMap[ind.Key()] = ind
		}
		if !maps.Equal(got, wantMap) {
			t.Fatalf("%s: Current = %v, want %v", step, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(wantMap)))
		}
	}
	apply := func(step string, add []intel.Policy, remove []intel.Indicator) {
		t.Helper()
		if err := b.Apply(ctx, add, remove); err != nil {
			t.Fatalf("%s: Apply: %v", step, err)
		}
	}

	expect("fresh backend")
	apply("empty apply on empty backend", nil, nil)
	expect("after empty apply")

	apply("add all", policies(inds...), nil)
	expect("after adding all", inds...)

	apply("add again", policies(inds[0]), nil)
	expect("after adding an existing entry", inds...)

	got, err := b.Current(ctx)
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	clear(got)
	expect("after clearing the map Current returned", inds...)

	absent := absentLike(inds[0])
	apply("remove one and an absent one", nil, []intel.Indicator{inds[0], absent})
	expect("after removing one and an absent one", inds[1:]...)

	apply("add and remove together", policies(inds[0]), []intel.Indicator{inds[1]})
	want := append([]intel.Indicator{inds[0]}, inds[2:]...)
	expect("after adding and removing in one apply", want...)

	apply("empty apply", nil, nil)
	expect("after an empty apply", want...)

	apply("remove all", nil, want)
	expect("after removing all")
}

// absentLike returns an indicator of ind's type that the suite never adds.
func absentLike(ind intel.Indicator) intel.Indicator {
	v := map[intel.IndicatorType]string{
		intel.IPv4:   "192.0.2.250",
		intel.IPv6:   "2001:db8::250",
		intel.CIDR:   "198.18.0.0/15",
		intel.Domain: "absent.example.org",
	}[ind.Type]
	return intel.Indicator{Type: ind.Type, Value: v}
}

// Register registers f under name in the responders registry until t
// ends, when the previous registration (or none) is restored. A nil f
// removes the registration for that time.
func Register(t testing.TB, name string, f responders.Factory) {
	t.Helper()
	t.Cleanup(responders.Override(name, f))
}
