package intel

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func testHeader() OperatorHeader {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return OperatorHeader{Mesh: "mesh-1", Nonce: strings.Repeat("5a", 16), Issued: now, Expires: now.Add(10 * time.Minute)}
}

func TestOperatorCommandRoundTrip(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	ind, _ := ParseIndicator("203.0.113.7")
	c := OperatorCommand{Header: testHeader(), Op: OpBlock, Indicator: &ind, TTLSeconds: 3600, Reason: "ssh"}
	s, err := SignOperatorCommand(priv, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenOperatorCommand(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Op != OpBlock || *got.Indicator != ind || got.TTL() != time.Hour || got.Header.Nonce != c.Header.Nonce {
		t.Fatalf("round trip = %+v", got)
	}
	// A field the schema does not know is refused, signed or not.
	var m map[string]any
	json.Unmarshal(s.Body, &m)
	m["surprise"] = true
	b, _ := json.Marshal(m)
	if _, err := OpenOperatorCommand(SignOperator(priv, b)); !errors.Is(err, ErrOperatorMalformed) {
		t.Errorf("unknown field: %v", err)
	}
	s.Body = append(s.Body[:len(s.Body):len(s.Body)], ' ')
	if _, err := OpenOperatorCommand(s); !errors.Is(err, ErrOperatorSignature) {
		t.Errorf("changed body: %v", err)
	}
}

func TestOperatorCommandValidateAndRoles(t *testing.T) {
	ind, _ := ParseIndicator("203.0.113.7")
	other, _ := ParseIndicator("198.51.100.0/24")
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	h := testHeader()
	tooMany := make([]Indicator, MaxBulkIndicators+1)
	for i := range tooMany {
		tooMany[i] = IndicatorFromAddr(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}))
	}
	good := map[string]OperatorCommand{
		"block":      {Op: OpBlock, Indicator: &ind},
		"allow wide": {Op: OpAllow, Indicator: &ind, Wide: true},
		"revoke":     {Op: OpRevoke, PolicyID: PolicyID(ActionBlock, ind)},
		"protect":    {Op: OpProtect, Prefix: "10.0.0.0/8"},
		"unprotect":  {Op: OpUnprotect, Prefix: "10.0.0.0/8"},
		"remove":     {Op: OpRemoveMember, Member: "12D3KooWabc"},
		"corr":       {Op: OpSetCorroboration, MinNodes: 3, WindowSeconds: 600},
		"floors":     {Op: OpSetFloors, Floors: &Floors{MinIPv4Bits: 20, MinIPv6Bits: 48}},
		"add op":     {Op: OpAddOperator, OperatorKey: pub, OperatorRole: OperatorResponder, OperatorName: "bob"},
		"rm op":      {Op: OpRemoveOperator, OperatorKeyID: OperatorKeyID(pub)},
		"token":      {Op: OpCreateJoinToken, TokenKey: pub, TokenUses: 1, TokenTTLSeconds: 3600},
		"block bulk": {Op: OpBlockBulk, Indicators: []Indicator{ind, other}, TTLSeconds: 60},
		"allow bulk": {Op: OpAllowBulk, Indicators: []Indicator{ind}, Wide: true},
	}
	for name, c := range good {
		c.Header = h
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string]OperatorCommand{
		"unknown op":       {Op: "dance"},
		"block no ind":     {Op: OpBlock},
		"block bad ind":    {Op: OpBlock, Indicator: &Indicator{Type: IPv4, Value: "1.2.3"}},
		"negative ttl":     {Op: OpBlock, Indicator: &ind, TTLSeconds: -1},
		"revoke short":     {Op: OpRevoke, PolicyID: "abc"},
		"protect bare":     {Op: OpProtect, Prefix: "10.0.0.1"},
		"protect unmasked": {Op: OpProtect, Prefix: "10.0.0.1/8"},
		"remove empty":     {Op: OpRemoveMember},
		"corr zero":        {Op: OpSetCorroboration, WindowSeconds: 60},
		"corr no window":   {Op: OpSetCorroboration, MinNodes: 2},
		"floors nil":       {Op: OpSetFloors},
		"floors bad":       {Op: OpSetFloors, Floors: &Floors{MinIPv4Bits: 40}},
		"add short key":    {Op: OpAddOperator, OperatorKey: pub[:3], OperatorRole: OperatorAdmin, OperatorName: "x"},
		"add bad role":     {Op: OpAddOperator, OperatorKey: pub, OperatorRole: "root", OperatorName: "x"},
		"add no name":      {Op: OpAddOperator, OperatorKey: pub, OperatorRole: OperatorAdmin},
		"rm op empty":      {Op: OpRemoveOperator},
		"token short key":  {Op: OpCreateJoinToken, TokenKey: []byte{1}, TokenUses: 1, TokenTTLSeconds: 1},
		"token no uses":    {Op: OpCreateJoinToken, TokenKey: pub, TokenTTLSeconds: 1},
		"token forever":    {Op: OpCreateJoinToken, TokenKey: pub, TokenUses: 1, TokenTTLSeconds: int64(MaxJoinTokenTTL/time.Second) + 1},
		"long reason":      {Op: OpBlock, Indicator: &ind, Reason: strings.Repeat("r", 1025)},
		"bulk empty":       {Op: OpBlockBulk},
		"bulk too many":    {Op: OpBlockBulk, Indicators: tooMany},
		"bulk bad ind":     {Op: OpBlockBulk, Indicators: []Indicator{ind, {Type: IPv4, Value: "1.2.3"}}},
		"bulk duplicate":   {Op: OpAllowBulk, Indicators: []Indicator{ind, other, ind}},
		"bulk negative":    {Op: OpBlockBulk, Indicators: []Indicator{ind}, TTLSeconds: -1},
	}
	for name, c := range bad {
		c.Header = h
		if err := c.Validate(); !errors.Is(err, ErrOperatorMalformed) {
			t.Errorf("%s: %v, want ErrOperatorMalformed", name, err)
		}
	}
	noHeader := good["block"]
	if err := noHeader.Validate(); err == nil {
		t.Error("a command without a header validated")
	}

	for name, tc := range map[string]struct {
		c         OperatorCommand
		responder bool
	}{
		"block":      {good["block"], true},
		"wide allow": {good["allow wide"], false},
		"revoke":     {good["revoke"], true},
		"protect":    {good["protect"], false},
		"add op":     {good["add op"], false},
		"token":      {good["token"], false},
		"block bulk": {good["block bulk"], true},
		"wide bulk":  {good["allow bulk"], false},
	} {
		if got := OperatorResponder.Permits(tc.c); got != tc.responder {
			t.Errorf("responder permits %s = %v, want %v", name, got, tc.responder)
		}
		if !OperatorAdmin.Permits(tc.c) {
			t.Errorf("admin does not permit %s", name)
		}
	}
}
