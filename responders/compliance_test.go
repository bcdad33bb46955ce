package responders_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// fakeCheck drifts while broken; Repair mends it unless failing.
type fakeCheck struct {
	mu      sync.Mutex
	name    string
	broken  []string
	failing bool
	repairs int
}

func (f *fakeCheck) Name() string { return f.name }

func (f *fakeCheck) Drift(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.broken), nil
}

func (f *fakeCheck) Repair(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.repairs++
	if f.failing {
		return errors.New("kernel said no")
	}
	f.broken = nil
	return nil
}

func (f *fakeCheck) breakWith(r ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.broken = r
}

// stepClock advances by one second on every reading.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func TestComplianceDetectsRepairsAndTimes(t *testing.T) {
	seg := &fakeCheck{name: "segmentation"}
	other := &fakeCheck{name: "blocks"}
	clk := &stepClock{t: t0}
	var seen []responders.ComplianceTransition
	c := responders.NewCompliance([]responders.ComplianceCheck{other, seg}, responders.ComplianceOptions{
		Now: clk.Now, OnTransition: func(tr responders.ComplianceTransition) { seen = append(seen, tr) }})
	defer c.Close()
	ctx := t.Context()

	st, err := c.CheckOnce(ctx)
	if err != nil || !st.Compliant || st.Drifts != 0 || len(seen) != 0 {
		t.Fatalf("clean check: %+v, %v, transitions %v", st, err, seen)
	}
	seg.breakWith("flow office-db: 1 of its rules missing from seg-input")
	st, err = c.CheckOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Compliant || seg.repairs != 1 || other.repairs != 0 {
		t.Fatalf("after drift: %+v; repairs seg %d other %d, want the drifted part repaired", st, seg.repairs, other.repairs)
	}
	if len(seen) != 2 || seen[0].Compliant || !seen[1].Compliant {
		t.Fatalf("transitions %+v, want out then back", seen)
	}
	out, back := seen[0], seen[1]
	if len(out.Reasons) != 1 || out.Reasons[0] != "segmentation: flow office-db: 1 of its rules missing from seg-input" {
		t.Errorf("reasons %q", out.Reasons)
	}
	if !back.OutSince.Equal(out.At) || back.Out != back.At.Sub(out.At) || back.Out <= 0 {
		t.Errorf("back %+v after out at %v: want the time out recorded", back, out.At)
	}
	if st.LastDrift == nil || st.LastDrift.Out != back.Out || st.Drifts != 1 || st.Repairs != 1 {
		t.Errorf("status %+v", st)
	}
	// The channel carries the same transitions.
	for _, want := range seen {
		if got := <-c.Transitions(); got.Compliant != want.Compliant || !got.At.Equal(want.At) {
			t.Errorf("channel %+v, want %+v", got, want)
		}
	}

	// A repair that fails leaves the node out of compliance, and says so.
	seg.breakWith("set seg-q4 missing")
	seg.failing = true
	st, err = c.CheckOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), "kernel said no") {
		t.Fatalf("failing repair: error %v", err)
	}
	if st.Compliant || st.OutSince.IsZero() || st.RepairFailures != 1 || len(st.Reasons) != 1 {
		t.Fatalf("status after failed repair %+v", st)
	}
	since := st.OutSince
	st, _ = c.CheckOnce(ctx)
	if st.Compliant || !st.OutSince.Equal(since) {
		t.Fatalf("still out: %+v, want out since %v", st, since)
	}
	seg.failing = false
	st, err = c.CheckOnce(ctx)
	if err != nil || !st.Compliant || st.LastDrift == nil || !st.LastDrift.OutSince.Equal(since) {
		t.Fatalf("repaired: %+v, %v", st, err)
	}
}

func TestBlockCheckFindsMissingBlocks(t *testing.T) {
	a, b := mustInd(t, "203.0.113.7"), mustInd(t, "203.0.113.8")
	dry := responders.NewDryRun(nil)
	// Held from before: not drift until a first pass has had its say.
	if err := dry.Apply(t.Context(), blocks(t0, mustInd(t, "198.51.100.9")), nil); err != nil {
		t.Fatal(err)
	}
	src := &state{mesh: blocks(t0, a, b)}
	clk := &clock{t: t0}
	r := responders.NewReconciler(src, []responders.Backend{dry}, responders.Options{Now: clk.Now})
	defer r.Close()
	chk := r.BlockCheck()
	ctx := t.Context()
	if d, err := chk.Drift(ctx); err != nil || len(d) != 0 {
		t.Fatalf("before the first pass: %v, %v", d, err)
	}
	if err := r.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := chk.Drift(ctx); err != nil || len(d) != 0 {
		t.Fatalf("after a pass: %v, %v", d, err)
	}
	// Someone removes a block behind the reconciler's back, and adds one.
	if err := dry.Apply(ctx, blocks(t0, mustInd(t, "198.51.100.1")), nil); err != nil {
		t.Fatal(err)
	}
	if err := dry.Apply(ctx, nil, []intel.Indicator{a}); err != nil {
		t.Fatal(err)
	}
	d, err := chk.Drift(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1 blocks missing from dry-run", "1 blocks in dry-run that no policy asks for"}
	if !slices.Equal(d, want) {
		t.Fatalf("drift %q, want %q", d, want)
	}
	if err := chk.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := chk.Drift(ctx); err != nil || len(d) != 0 {
		t.Fatalf("after repair: %v, %v", d, err)
	}
	if !dry.Has(a) {
		t.Error("repair did not restore the block")
	}
}
