package intel

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func testSegmentation() Segmentation {
	pfx := netip.MustParsePrefix
	return Segmentation{
		Zones: []Zone{
			{Name: "office", CIDRs: []netip.Prefix{pfx("10.1.0.0/16")}},
			{Name: "servers", CIDRs: []netip.Prefix{pfx("10.2.0.0/16")}, DefaultDeny: true},
			{Name: "mgmt", CIDRs: []netip.Prefix{pfx("10.9.0.0/24")}, Management: true},
		},
		Flows: []Flow{
			{Name: "office-web", From: "office", To: "servers", Proto: ProtoTCP, Ports: []PortRange{{443, 443}}, Action: FlowAllow, Priority: 10},
			{Name: "office-db", From: "office", To: "servers", Proto: ProtoTCP, Ports: []PortRange{{5432, 5432}}, Action: FlowDeny, Priority: 10, Mode: FlowObserve},
			{Name: "no-smb", From: AnyZone, To: "office", Proto: ProtoTCP, Ports: []PortRange{{445, 445}}, Action: FlowDeny, Priority: 20},
			{Name: "smb-tie-allow", From: AnyZone, To: "office", Proto: ProtoTCP, Ports: []PortRange{{445, 445}}, Action: FlowAllow, Priority: 20},
		},
	}
}

func TestSegmentationDecide(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := netip.MustParseAddr
	s := testSegmentation()
	s.Quarantines = []Quarantine{
		{Host: a("10.1.0.66"), By: "op", Since: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)},
		{Host: a("10.1.0.77"), By: "op", Since: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)},
	}
	cases := []struct {
		src, dst, proto string
		port            uint16
		want            Verdict
	}{
		{"10.1.0.5", "10.2.0.5", ProtoTCP, 443, Verdict{By: "flow:office-web"}},
		{"10.1.0.5", "10.2.0.5", ProtoTCP, 22, Verdict{Drop: true, By: "default-deny:servers"}},
		{"10.1.0.5", "10.2.0.5", ProtoTCP, 5432, Verdict{Observed: true, By: "flow:office-db"}},
		{"10.2.0.5", "10.1.0.5", ProtoTCP, 445, Verdict{Drop: true, By: "flow:no-smb"}},
		{"10.2.0.5", "10.1.0.5", ProtoUDP, 445, Verdict{}},
		{"10.1.0.66", "10.1.0.5", ProtoTCP, 80, Verdict{Drop: true, By: "quarantine:10.1.0.66"}},
		{"10.1.0.5", "10.1.0.66", ProtoICMP, 0, Verdict{Drop: true, By: "quarantine:10.1.0.66"}},
		{"10.1.0.66", "10.9.0.1", ProtoTCP, 22, Verdict{}},
		{"10.9.0.1", "10.1.0.66", ProtoTCP, 22, Verdict{}},
		{"10.1.0.77", "10.1.0.5", ProtoTCP, 80, Verdict{}},
		{"::ffff:10.1.0.66", "10.1.0.5", ProtoTCP, 80, Verdict{Drop: true, By: "quarantine:10.1.0.66"}},
	}
	for _, c := range cases {
		got := s.Decide(now, a(c.src), a(c.dst), c.proto, c.port)
		if got != c.want {
			t.Errorf("%s -> %s %s/%d: %+v, want %+v", c.src, c.dst, c.proto, c.port, got, c.want)
		}
	}
}

func TestSegmentValidateNamesTheField(t *testing.T) {
	pfx := netip.MustParsePrefix
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"zone name", Zone{Name: "Office", CIDRs: []netip.Prefix{pfx("10.0.0.0/8")}}.Validate(), "zone name"},
		{"zone any", Zone{Name: "*", CIDRs: []netip.Prefix{pfx("10.0.0.0/8")}}.Validate(), "zone name"},
		{"zone no cidrs", Zone{Name: "a"}.Validate(), "0 cidrs"},
		{"zone unmasked", Zone{Name: "a", CIDRs: []netip.Prefix{pfx("10.0.0.1/8")}}.Validate(), "cidrs[0]"},
		{"zone repeated", Zone{Name: "a", CIDRs: []netip.Prefix{pfx("10.0.0.0/8"), pfx("10.0.0.0/8")}}.Validate(), "cidrs[1]"},
		{"zone site", Zone{Name: "a", CIDRs: []netip.Prefix{pfx("10.0.0.0/8")}, Sites: []string{"-x"}}.Validate(), "sites[0]"},
		{"flow both any", Flow{Name: "f", From: "*", To: "*", Proto: ProtoAny, Action: FlowDeny}.Validate(), "both"},
		{"flow proto", Flow{Name: "f", From: "a", To: "b", Proto: "sctp", Action: FlowDeny}.Validate(), "proto"},
		{"flow icmp ports", Flow{Name: "f", From: "a", To: "b", Proto: ProtoICMP, Ports: []PortRange{{1, 2}}, Action: FlowDeny}.Validate(), "ports need"},
		{"flow port 0", Flow{Name: "f", From: "a", To: "b", Proto: ProtoTCP, Ports: []PortRange{{0, 2}}, Action: FlowDeny}.Validate(), "ports[0]"},
		{"flow reversed", Flow{Name: "f", From: "a", To: "b", Proto: ProtoTCP, Ports: []PortRange{{9, 2}}, Action: FlowDeny}.Validate(), "ports[0]"},
		{"flow action", Flow{Name: "f", From: "a", To: "b", Proto: ProtoTCP, Action: "drop"}.Validate(), "action"},
		{"flow priority", Flow{Name: "f", From: "a", To: "b", Proto: ProtoTCP, Action: FlowDeny, Priority: 1001}.Validate(), "priority"},
		{"flow mode", Flow{Name: "f", From: "a", To: "b", Proto: ProtoTCP, Action: FlowDeny, Mode: "dry"}.Validate(), "mode"},
		{"quarantine host", Quarantine{}.Validate(), "quarantine host"},
		{"quarantine mapped", Quarantine{Host: netip.MustParseAddr("::ffff:10.0.0.1")}.Validate(), "plain"},
		{"quarantine expiry", Quarantine{Host: netip.MustParseAddr("10.0.0.1"), Since: time.Unix(10, 0), ExpiresAt: time.Unix(5, 0)}.Validate(), "expires_at"},
		{"quarantine too long", Quarantine{Host: netip.MustParseAddr("10.0.0.1"), Since: time.Unix(0, 0), ExpiresAt: time.Unix(0, 0).Add(MaxQuarantineTTL + time.Second)}.Validate(), "limit"},
	}
	for _, c := range cases {
		if c.err == nil || !errors.Is(c.err, ErrInvalidSegment) || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want ErrInvalidSegment naming %q", c.name, c.err, c.want)
		}
	}
	ok := testSegmentation()
	for _, z := range ok.Zones {
		if err := z.Validate(); err != nil {
			t.Errorf("zone %s: %v", z.Name, err)
		}
	}
	for _, f := range ok.Flows {
		if err := f.Validate(); err != nil {
			t.Errorf("flow %s: %v", f.Name, err)
		}
	}
}
