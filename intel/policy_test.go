package intel

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPolicyValidate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ind := Indicator{Type: IPv4, Value: "203.0.113.7"}
	tests := []struct {
		name string
		edit func(*Policy)
		want string // a part of the error; "" means valid
	}{
		{"valid", func(*Policy) {}, ""},
		{"no expiry", func(p *Policy) { p.ExpiresAt = time.Time{} }, ""},
		{"unknown action", func(p *Policy) { p.Action = "nuke" }, `action "nuke"`},
		{"empty action", func(p *Policy) { p.Action = "" }, `action ""`},
		{"bad indicator", func(p *Policy) { p.Indicator = Indicator{Type: IPv4, Value: "x"} }, "ipv4"},
		{"wrong id", func(p *Policy) { p.ID = "0011223344556677" }, "does not match action and indicator"},
		{"id of another action", func(p *Policy) { p.ID = PolicyID(ActionAllow, ind) }, "does not match"},
		{"allow with its id", func(p *Policy) { p.Action, p.ID = ActionAllow, PolicyID(ActionAllow, ind) }, ""},
		{"observe with its id", func(p *Policy) { p.Action, p.ID = ActionObserve, PolicyID(ActionObserve, ind) }, ""},
		{"no author", func(p *Policy) { p.Author = "" }, "author is required"},
		{"no created_at", func(p *Policy) { p.CreatedAt = time.Time{} }, "created_at is required"},
		{"expires at creation", func(p *Policy) { p.ExpiresAt = p.CreatedAt }, "is not after created_at"},
		{"expires before creation", func(p *Policy) { p.ExpiresAt = p.CreatedAt.Add(-time.Hour) }, "is not after created_at"},
		{"long reason", func(p *Policy) { p.Reason = strings.Repeat("r", 1025) }, "reason is 1025 bytes"},
		{"longest reason", func(p *Policy) { p.Reason = strings.Repeat("r", 1024) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPolicy(ActionBlock, ind, "brute force", "node-a", t0, time.Hour)
			tt.edit(&p)
			err := p.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid policy rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalidPolicy containing %q", err, tt.want)
			}
		})
	}
}
