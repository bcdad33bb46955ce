package intel

import (
	"strings"
	"testing"
	"time"
)

func testFeedPolicy() FeedPolicy {
	return FeedPolicy{Name: "abuse-ch", Source: "abuse.ch feodo", MinConfidence: 80, Types: []IndicatorType{IPv4, CIDR},
		Action: ActionBlock, TTLSeconds: 86400, Enabled: true}
}

func TestFeedPolicyValidateNamesTheField(t *testing.T) {
	if err := testFeedPolicy().Validate(); err != nil {
		t.Fatalf("a good policy: %v", err)
	}
	for _, c := range []struct {
		field string
		mod   func(*FeedPolicy)
	}{
		{"name", func(p *FeedPolicy) { p.Name = "" }},
		{"name", func(p *FeedPolicy) { p.Name = "Bad Name" }},
		{"name", func(p *FeedPolicy) { p.Name = "-x" }},
		{"name", func(p *FeedPolicy) { p.Name = strings.Repeat("a", MaxFeedPolicyName+1) }},
		{"source", func(p *FeedPolicy) { p.Source = "" }},
		{"min_confidence", func(p *FeedPolicy) { p.MinConfidence = 101 }},
		{"min_confidence", func(p *FeedPolicy) { p.MinConfidence = -1 }},
		{"types", func(p *FeedPolicy) { p.Types = nil }},
		{"types[1]", func(p *FeedPolicy) { p.Types = []IndicatorType{IPv4, SHA256} }},
		{"types[1]", func(p *FeedPolicy) { p.Types = []IndicatorType{IPv4, IPv4} }},
		{"action", func(p *FeedPolicy) { p.Action = ActionAllow }},
		{"ttl_seconds", func(p *FeedPolicy) { p.TTLSeconds = 0 }},
		{"ttl_seconds", func(p *FeedPolicy) { p.TTLSeconds = int64(MaxFeedPolicyTTL/time.Second) + 1 }},
		{"publishers[0]", func(p *FeedPolicy) { p.Publishers = []string{"not a node id!"} }},
		{"publishers[1]", func(p *FeedPolicy) { p.Publishers = []string{"12D3KooWabc", "12D3KooWabc"} }},
	} {
		p := testFeedPolicy()
		c.mod(&p)
		err := p.Validate()
		if err == nil {
			t.Errorf("%s: accepted %+v", c.field, p)
			continue
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %q does not name the field", c.field, err)
		}
	}
}

func TestFeedPolicyCheckReport(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ip, _ := NewIndicator(IPv4, "203.0.113.9")
	dom, _ := NewIndicator(Domain, "evil.example")
	good := IndicatorReport{Indicator: ip, Source: "abuse.ch feodo", Confidence: 90, ValidFrom: now.Add(-time.Hour)}
	p := testFeedPolicy()
	if reason, err := p.CheckReport(good, now); reason != "" || err != nil {
		t.Fatalf("a matching report: %s %v", reason, err)
	}
	for _, c := range []struct {
		want string
		mod  func(*FeedPolicy, *IndicatorReport)
	}{
		{FeedReasonDisabled, func(p *FeedPolicy, _ *IndicatorReport) { p.Enabled = false }},
		{FeedReasonSource, func(_ *FeedPolicy, r *IndicatorReport) { r.Source = "other" }},
		{FeedReasonConfidence, func(_ *FeedPolicy, r *IndicatorReport) { r.Confidence = 79 }},
		{FeedReasonType, func(_ *FeedPolicy, r *IndicatorReport) { r.Indicator = dom }},
		{FeedReasonNotValid, func(_ *FeedPolicy, r *IndicatorReport) { r.ValidFrom = now.Add(time.Minute) }},
		{FeedReasonNotValid, func(_ *FeedPolicy, r *IndicatorReport) { r.ValidUntil = now }},
	} {
		p, r := testFeedPolicy(), good
		c.mod(&p, &r)
		if reason, err := p.CheckReport(r, now); reason != c.want || err == nil {
			t.Errorf("want %s, got %q (%v)", c.want, reason, err)
		}
	}
	r := good
	r.ValidUntil = now.Add(90 * time.Minute)
	if got := p.FeedBlockTTL(r, now); got != 90*time.Minute {
		t.Errorf("ttl cut at the report's end: %s, want 1h30m", got)
	}
	if got := p.FeedBlockTTL(good, now); got != 24*time.Hour {
		t.Errorf("ttl of an open-ended report: %s, want the policy's 24h", got)
	}
}

func TestFeedOperatorCommandsValidate(t *testing.T) {
	h := OperatorHeader{Mesh: "00112233445566778899aabbccddeeff", Nonce: "0123456789abcdef0123456789abcdef",
		Issued: time.Now().UTC(), Expires: time.Now().UTC().Add(time.Minute)}
	fp := testFeedPolicy()
	g, _ := NewIndicator(Domain, "partner.example")
	h256, _ := NewIndicator(SHA256, strings.Repeat("ab", 32))
	for _, c := range []struct {
		cmd OperatorCommand
		ok  bool
	}{
		{OperatorCommand{Header: h, Op: OpSetFeedPolicy, FeedPolicy: &fp}, true},
		{OperatorCommand{Header: h, Op: OpSetFeedPolicy}, false},
		{OperatorCommand{Header: h, Op: OpSetFeedPolicy, FeedPolicy: &FeedPolicy{Name: "x"}}, false},
		{OperatorCommand{Header: h, Op: OpRemoveFeedPolicy, FeedPolicyName: "abuse-ch"}, true},
		{OperatorCommand{Header: h, Op: OpRemoveFeedPolicy, FeedPolicyName: "A B"}, false},
		{OperatorCommand{Header: h, Op: OpWarninglistAdd, Indicator: &g}, true},
		{OperatorCommand{Header: h, Op: OpWarninglistRemove, Indicator: &g}, true},
		{OperatorCommand{Header: h, Op: OpWarninglistAdd}, false},
		{OperatorCommand{Header: h, Op: OpWarninglistAdd, Indicator: &h256}, false},
	} {
		err := c.cmd.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%s %+v: %v, want ok=%v", c.cmd.Op, c.cmd, err, c.ok)
		}
		if c.cmd.RequiredRole() != OperatorAdmin {
			t.Errorf("%s needs %s, want admin", c.cmd.Op, c.cmd.RequiredRole())
		}
	}
}
