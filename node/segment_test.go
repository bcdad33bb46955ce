package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshward/meshward/alert"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/testenv"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/nft"
)

// segmentCommands are the operator commands of a small segmentation.
func segmentCommands() []intel.OperatorCommand {
	pfx := netip.MustParsePrefix
	return []intel.OperatorCommand{
		{Op: intel.OpSetZone, Zone: &intel.Zone{Name: "office", CIDRs: []netip.Prefix{pfx("10.62.1.0/24")}}},
		{Op: intel.OpSetZone, Zone: &intel.Zone{Name: "servers", CIDRs: []netip.Prefix{pfx("10.62.2.0/24")}}},
		{Op: intel.OpSetZone, Zone: &intel.Zone{Name: "elsewhere", CIDRs: []netip.Prefix{pfx("10.62.3.0/24")}, Sites: []string{"other-site"}}},
		{Op: intel.OpSetFlow, Flow: &intel.Flow{Name: "office-ssh", From: "office", To: "servers", Proto: intel.ProtoTCP,
			Ports: []intel.PortRange{{From: 22, To: 22}}, Action: intel.FlowDeny, Priority: 10}},
		{Op: intel.OpSetFlow, Flow: &intel.Flow{Name: "office-elsewhere", From: "office", To: "elsewhere", Proto: intel.ProtoAny,
			Action: intel.FlowDeny, Mode: intel.FlowObserve}},
	}
}

func submitAll(t *testing.T, n *Node, cmds []intel.OperatorCommand) {
	t.Helper()
	api := newAdminAPI(n)
	waitFor(t, "the mesh ID", func() bool { return api.MeshID() != "" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range cmds {
		if err := api.SubmitOperator(ctx, signOperator(t, n, c)); err != nil {
			t.Fatalf("%s: %v", c.Op, err)
		}
	}
}

func segTags(t *testing.T, fw *nft.Firewall) map[string]bool {
	t.Helper()
	cs, err := fw.SegmentCounters(context.Background())
	if err != nil {
		t.Logf("segment counters: %v", err)
		return nil
	}
	out := map[string]bool{}
	for _, c := range cs {
		out[c.Tag] = true
	}
	return out
}

var errNoFlowRule = errors.New("no office-ssh rule in seg-input")

// TestNodeEnforcesSegmentationAndRepairsDrift: a node enforcing with
// nftables turns the FSM's segmentation into its table (zones of other
// sites left out); a rule deleted by hand is detected, reported (with the
// reason, to watchers and the metric), repaired, and the time out
// recorded.
func TestNodeEnforcesSegmentationAndRepairsDrift(t *testing.T) {
	fd := testenv.NetNS(t, fmt.Sprintf("mwseg-%d", os.Getpid()))
	recv := newAlertReceiver(t)
	n := startSingleWith(t, Options{NftablesNetNS: fd}, func(c *Config) {
		c.Site = "hq"
		c.Responders.DryRun = false
		c.Responders.Nftables.Enabled = true
		recv.configure(t, c)
		c.Alerts.EvalInterval = 100 * time.Millisecond
		c.Alerts.Rules = []alert.Rule{{Name: "drift", On: alert.KindDrift}}
	})
	waitFor(t, "the node to lead", func() bool { return n.Consensus().IsLeader() })
	var mu sync.Mutex
	var seen []responders.ComplianceTransition
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.ComplianceTransitions(ctx, func(tr responders.ComplianceTransition) {
			mu.Lock()
			seen = append(seen, tr)
			mu.Unlock()
		})
	}()
	defer func() { cancel(); <-done }()

	submitAll(t, n, segmentCommands())
	fw, err := nft.New(nft.WithNetNS(fd))
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	waitFor(t, "the flow in the kernel", func() bool { return segTags(t, fw)["flow:office-ssh"] })
	if tags := segTags(t, fw); tags["flow:office-elsewhere"] {
		t.Errorf("a flow into a zone of another site compiled here: %v", tags)
	}
	st := n.Compliance().Segmentation
	if !st.Enforced || st.Zones != 2 || st.Flows != 1 || st.Hash == "" {
		t.Errorf("segmentation status %+v: want enforced, 2 zones and 1 flow on this site", st)
	}

	// By hand: the flow's rule goes.
	other, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet}
	// The node may still be applying the commits above, each of which
	// replaces the chain's rules: a handle read here can be gone by the
	// time the delete reaches the kernel (ENOENT), so read and delete
	// again then.
	deleteFlow := func() error {
		rules, err := other.GetRules(tb, &nftables.Chain{Name: "seg-input", Table: tb})
		if err != nil {
			return err
		}
		deleted := false
		for _, r := range rules {
			if strings.HasSuffix(string(r.UserData), " flow:office-ssh") {
				if err := other.DelRule(r); err != nil {
					return err
				}
				deleted = true
			}
		}
		if !deleted {
			return errNoFlowRule
		}
		return other.Flush()
	}
	driftSeen := func() bool {
		d := n.Compliance().LastDrift
		return d != nil && strings.Contains(strings.Join(d.Reasons, ";"), "segmentation: flow office-ssh")
	}
	// A late apply of the commits above could also put the rule back
	// before the check sees it gone: then it is deleted again.
	for round := 1; !driftSeen(); round++ {
		for attempt := 1; ; attempt++ {
			err := deleteFlow()
			if err == nil {
				break
			}
			if attempt < 50 && (errors.Is(err, syscall.ENOENT) || errors.Is(err, errNoFlowRule)) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			t.Fatalf("deleting the flow's rule by hand (attempt %d): %v", attempt, err)
		}
		if _, err := n.CheckCompliance(context.Background()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !driftSeen() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !driftSeen() && round == 5 {
			t.Fatal("the drift of the deleted rule was never reported")
		}
	}
	if rep := n.Compliance(); !rep.Compliant || rep.Repairs == 0 {
		t.Errorf("after the repair: %+v", rep)
	}
	if !segTags(t, fw)["flow:office-ssh"] {
		t.Error("the rule was not put back")
	}
	waitFor(t, "the watcher to see out and back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 2 && !seen[0].Compliant && seen[1].Compliant && seen[1].OutSince.Equal(seen[0].At)
	})
	// The alerting was told: a drift alert, then its resolution.
	waitFor(t, "the drift alert and its resolution", func() bool {
		got := strings.Join(recv.received(), "\n")
		return strings.Contains(got, "drift firing") && strings.Contains(got, "drift resolved")
	})

	// The rules' kernel counters and the part's work are metrics.
	mfs, err := n.deps.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			switch mf.GetName() {
			case "meshward_segmentation_rule_packets_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "tag" {
						found[l.GetValue()] = true
					}
				}
			case "meshward_segmentation_applies_total", "meshward_compliance_ok":
				found[mf.GetName()] = v > 0 || m.GetGauge().GetValue() > 0
			}
		}
	}
	for _, want := range []string{"flow:office-ssh", "meshward_segmentation_applies_total", "meshward_compliance_ok"} {
		if !found[want] {
			t.Errorf("metrics lack %s (or it is zero): %v", want, found)
		}
	}
	var m dto.Metric
	if err := n.compliance.out.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.GetHistogram().GetSampleCount() == 0 {
		t.Error("meshward_compliance_out_seconds observed nothing")
	}
}

// TestNodeSegmentationDryRun: without nftables the segmentation is
// compiled and reported, not applied, and compliance has nothing of it
// to check.
func TestNodeSegmentationDryRun(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.Site = "hq" })
	waitFor(t, "the node to lead", func() bool { return n.Consensus().IsLeader() })
	submitAll(t, n, segmentCommands())
	waitFor(t, "the segmentation compiled", func() bool { return n.Compliance().Segmentation.Flows == 1 })
	rep := n.Compliance()
	if rep.Segmentation.Enforced || !rep.Segmentation.AppliedAt.IsZero() || rep.Segmentation.InputRules == 0 {
		t.Errorf("dry run status %+v: want compiled rules, nothing applied", rep.Segmentation)
	}
	if rep, err := n.CheckCompliance(context.Background()); err != nil || !rep.Compliant {
		t.Errorf("dry-run compliance %+v, %v", rep, err)
	}

	// GET /v1/compliance and the mesh-wide question say the same.
	c := localAdminClient(t, n.deps.Config.SocketPath())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := c.Compliance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != n.ID() || !got.Compliant || got.Checks == 0 || got.Segmentation.Flows != 1 || got.Segmentation.Hash != rep.Segmentation.Hash {
		t.Errorf("GET /v1/compliance %+v, want %+v", got, rep)
	}
	waitFor(t, "the node a member", func() bool { return n.Consensus().IsMember(n.ID()) })
	v, err := c.Query(ctx, "compliance", "", 2*time.Second)
	if err != nil || len(v.Results) != 1 || v.Results[0].Status != "answered" {
		t.Fatalf("compliance query: %+v, %v", v, err)
	}
	var a ComplianceReport
	if err := json.Unmarshal(v.Results[0].Answer, &a); err != nil {
		t.Fatal(err)
	}
	if a.Node != n.ID() || !a.Compliant || a.Segmentation.Flows != 1 {
		t.Errorf("compliance answer %+v", a)
	}
	if _, err := c.Query(ctx, "compliance", "x", 0); err == nil {
		t.Error("a compliance query with a value accepted")
	}
}
