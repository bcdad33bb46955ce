package confcheck

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestUnderPrefixesEveryField(t *testing.T) {
	var inner Problems
	inner.Add("rate_limit", 0, "must be positive")
	inner.Add("[2].name", "x", "must be unique")
	var outer Problems
	outer.Join("gossip", inner.Err())
	outer.Join("gossip", nil)
	outer.Join("store", errors.New("plain"))
	got := outer.Err().Error()
	for _, want := range []string{"gossip.rate_limit: must be positive (got 0)", "gossip[2].name: must be unique (got x)", "store: plain"} {
		if !strings.Contains(got, want) {
			t.Errorf("error %q lacks %q", got, want)
		}
	}
	fields := Fields(outer.Err())
	if len(fields) != 2 || fields[0].Field != "gossip.rate_limit" || fields[1].Field != "gossip[2].name" {
		t.Errorf("Fields = %+v", fields)
	}
	if Under("x", nil) != nil {
		t.Error("Under(nil) is not nil")
	}
	var none Problems
	if none.Err() != nil {
		t.Error("empty Problems has an error")
	}
}

func TestTypeErrorsNameTheField(t *testing.T) {
	src := []byte("a:\n  b: notanint\nlist:\n  - x: 1\n    y: bad\n")
	var v struct {
		A struct {
			B int `yaml:"b"`
		} `yaml:"a"`
		List []struct {
			X int `yaml:"x"`
			Y int `yaml:"y"`
		} `yaml:"list"`
	}
	err := yaml.Unmarshal(src, &v)
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		t.Fatalf("want a TypeError, got %v", err)
	}
	got := TypeErrors(src, te).Error()
	for _, want := range []string{"a.b (line 2):", "list[0].y (line 5):"} {
		if !strings.Contains(got, want) {
			t.Errorf("error %q lacks %q", got, want)
		}
	}
}
