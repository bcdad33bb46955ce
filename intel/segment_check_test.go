package intel

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestFlowCoversAndContradicts(t *testing.T) {
	smb := Flow{Name: "no-smb", From: AnyZone, To: "office", Proto: ProtoTCP, Ports: []PortRange{{445, 445}, {137, 139}}, Action: FlowDeny, Priority: 20}
	cases := []struct {
		name   string
		g      Flow
		covers bool
	}{
		{"same", smb, true},
		{"ports written otherwise", Flow{From: AnyZone, To: "office", Proto: ProtoTCP, Ports: []PortRange{{137, 138}, {139, 139}, {440, 450}}}, true},
		{"adjacent ranges merge", Flow{From: AnyZone, To: "office", Proto: ProtoTCP, Ports: []PortRange{{137, 200}, {201, 445}}}, true},
		{"every port", Flow{From: AnyZone, To: "office", Proto: ProtoTCP}, true},
		{"any proto", Flow{From: AnyZone, To: "office", Proto: ProtoAny}, true},
		{"missing a port", Flow{From: AnyZone, To: "office", Proto: ProtoTCP, Ports: []PortRange{{137, 139}}}, false},
		{"a hole", Flow{From: AnyZone, To: "office", Proto: ProtoTCP, Ports: []PortRange{{137, 138}, {445, 445}}}, false},
		{"other proto", Flow{From: AnyZone, To: "office", Proto: ProtoUDP}, false},
		{"narrower from", Flow{From: "lab", To: "office", Proto: ProtoAny}, false},
		{"wildcard to", Flow{From: AnyZone, To: AnyZone, Proto: ProtoAny}, true},
	}
	for _, c := range cases {
		if got := c.g.Covers(smb); got != c.covers {
			t.Errorf("%s: Covers = %v, want %v", c.name, got, c.covers)
		}
	}
	if (Flow{From: AnyZone, To: "office", Proto: ProtoTCP, Ports: []PortRange{{445, 445}}}).Covers(Flow{From: AnyZone, To: "office", Proto: ProtoTCP}) {
		t.Error("some ports cover every port")
	}

	allow := smb
	allow.Name, allow.Action, allow.Ports = "smb-ok", FlowAllow, []PortRange{{137, 139}, {445, 445}}
	s := Segmentation{Flows: []Flow{smb}}
	if g, ok := s.Contradicts(allow); !ok || g.Name != "no-smb" {
		t.Fatalf("Contradicts = %v %v, want no-smb", g.Name, ok)
	}
	for _, f := range []Flow{
		func() Flow { f := allow; f.Priority = 21; return f }(),
		func() Flow { f := allow; f.Ports = f.Ports[:1]; return f }(),
		func() Flow { f := allow; f.Action = FlowDeny; return f }(),
		func() Flow { f := allow; f.Name = "no-smb"; return f }(), // a replacement
	} {
		if g, ok := s.Contradicts(f); ok {
			t.Errorf("%+v contradicts %s", f, g.Name)
		}
	}

	// Shadowing: in evaluation order, each flow against those before it.
	s.Flows = append(s.Flows, Flow{Name: "office-smb", From: "lab", To: "office", Proto: ProtoTCP, Ports: []PortRange{{445, 445}}, Action: FlowAllow, Priority: 5},
		Flow{Name: "all", From: AnyZone, To: "office", Proto: ProtoAny, Action: FlowAllow, Priority: 30},
		Flow{Name: "tie-allow", From: AnyZone, To: "office", Proto: ProtoTCP, Ports: []PortRange{{445, 445}}, Action: FlowAllow, Priority: 1})
	w := s.FlowWarnings()
	want := []FlowWarning{{"no-smb", "all"}, {"office-smb", "all"}, {"tie-allow", "all"}}
	if len(w) != len(want) {
		t.Fatalf("warnings %+v, want %+v", w, want)
	}
	for i := range w {
		if w[i] != want[i] {
			t.Errorf("warning %d: %+v, want %+v", i, w[i], want[i])
		}
	}
	// Without "all", no-smb (from any zone) shadows both; with no-smb
	// from another zone than lab, only tie-allow.
	s.Flows = []Flow{s.Flows[0], s.Flows[1], s.Flows[3]}
	if w := s.FlowWarnings(); len(w) != 2 || w[0] != (FlowWarning{"office-smb", "no-smb"}) || w[1] != (FlowWarning{"tie-allow", "no-smb"}) {
		t.Fatalf("warnings %+v", w)
	}
	s.Flows[0].From = "guest"
	if w := s.FlowWarnings(); len(w) != 0 {
		t.Fatalf("warnings %+v, want none: no flow covers another by zone", w)
	}
}

func TestAutoQuarantineValidate(t *testing.T) {
	ok := AutoQuarantine{Rules: []string{"ssh-internal-bruteforce"}}
	if err := ok.Validate(); err != nil || ok.Nodes() != 1 || ok.MaxTTL() != DefaultAutoQuarantineTTL || !ok.Allows("ssh-internal-bruteforce") || ok.Allows("x") {
		t.Fatalf("defaults: %v %d %s", err, ok.Nodes(), ok.MaxTTL())
	}
	for _, c := range []struct {
		a    AutoQuarantine
		want string
	}{
		{AutoQuarantine{}, "auto_quarantine.rules"},
		{AutoQuarantine{Rules: []string{"a", "a"}}, "rules[1]"},
		{AutoQuarantine{Rules: []string{""}}, "rules[0]"},
		{AutoQuarantine{Rules: []string{"a"}, MinNodes: -1}, "min_nodes"},
		{AutoQuarantine{Rules: []string{"a"}, MinNodes: 65}, "min_nodes"},
		{AutoQuarantine{Rules: []string{"a"}, MaxTTLSeconds: -1}, "max_ttl_seconds"},
		{AutoQuarantine{Rules: []string{"a"}, MaxTTLSeconds: int64(MaxQuarantineTTL/time.Second) + 1}, "max_ttl_seconds"},
	} {
		err := c.a.Validate()
		if !errors.Is(err, ErrInvalidSegment) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.a, err, c.want)
		}
	}
	z := Zone{Name: "office", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, AutoQuarantine: &AutoQuarantine{}}
	if err := z.Validate(); err == nil || !strings.Contains(err.Error(), "zone office: ") {
		t.Fatalf("zone with a bad auto_quarantine: %v", err)
	}
}

func TestSegmentOperatorCommands(t *testing.T) {
	h := OperatorHeader{Mesh: "m", Nonce: strings.Repeat("ab", 16), Issued: time.Unix(1_800_000_000, 0), Expires: time.Unix(1_800_000_060, 0)}
	zone := Zone{Name: "office", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	flow := Flow{Name: "f", From: "office", To: AnyZone, Proto: ProtoAny, Action: FlowDeny}
	host := netip.MustParseAddr("10.1.0.66")
	for _, c := range []struct {
		cmd  OperatorCommand
		role OperatorRole
		err  string
	}{
		{OperatorCommand{Op: OpSetZone, Zone: &zone}, OperatorAdmin, ""},
		{OperatorCommand{Op: OpSetZone}, OperatorAdmin, "zone is required"},
		{OperatorCommand{Op: OpSetZone, Zone: &Zone{Name: "x"}}, OperatorAdmin, "0 cidrs"},
		{OperatorCommand{Op: OpRemoveZone, ZoneName: "office"}, OperatorAdmin, ""},
		{OperatorCommand{Op: OpRemoveZone, ZoneName: "Office"}, OperatorAdmin, "zone_name"},
		{OperatorCommand{Op: OpSetFlow, Flow: &flow}, OperatorAdmin, ""},
		{OperatorCommand{Op: OpSetFlow, Flow: &Flow{Name: "f", From: "a", To: "b", Proto: "sctp", Action: FlowDeny}}, OperatorAdmin, "proto"},
		{OperatorCommand{Op: OpRemoveFlow, FlowName: ""}, OperatorAdmin, "flow_name"},
		{OperatorCommand{Op: OpQuarantine, Host: host, TTLSeconds: 3600}, OperatorResponder, ""},
		{OperatorCommand{Op: OpQuarantine, Host: host}, OperatorAdmin, ""},
		{OperatorCommand{Op: OpQuarantine, Host: host, TTLSeconds: -1}, OperatorResponder, "ttl_seconds"},
		{OperatorCommand{Op: OpQuarantine, Host: host, TTLSeconds: int64(MaxQuarantineTTL/time.Second) + 1}, OperatorResponder, "ttl_seconds"},
		{OperatorCommand{Op: OpQuarantine, Host: host, TTLSeconds: 60, Reason: strings.Repeat("x", MaxQuarantineText+1)}, OperatorResponder, "reason"},
		{OperatorCommand{Op: OpQuarantine, TTLSeconds: 60}, OperatorResponder, "host"},
		{OperatorCommand{Op: OpQuarantine, Host: netip.MustParseAddr("::ffff:10.1.0.66"), TTLSeconds: 60}, OperatorResponder, "host"},
		{OperatorCommand{Op: OpRelease, Host: host}, OperatorResponder, ""},
		{OperatorCommand{Op: OpRelease}, OperatorResponder, "host"},
	} {
		c.cmd.Header = h
		if got := c.cmd.RequiredRole(); got != c.role {
			t.Errorf("%s %+v: role %s, want %s", c.cmd.Op, c.cmd, got, c.role)
		}
		err := c.cmd.Validate()
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.cmd.Op, err, c.err)
		}
	}
	// The strict decoding round trip of a signed quarantine.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := SignOperatorCommand(priv, OperatorCommand{Header: h, Op: OpQuarantine, Host: host, TTLSeconds: 60, Reason: "lateral"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenOperatorCommand(s)
	if err != nil || c.Host != host || c.TTL() != time.Minute {
		t.Fatalf("open: %+v %v", c, err)
	}
}
