package intel

import (
	"net/netip"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "10.0.0.1", want: "10.0.0.1/32"},
		{in: " 10.0.0.1 ", want: "10.0.0.1/32"},
		{in: "10.1.2.3/16", want: "10.1.0.0/16"},
		{in: "2001:db8::1", want: "2001:db8::1/128"},
		{in: "2001:db8::1/32", want: "2001:db8::/32"},
		{in: "::ffff:192.0.2.1", want: "192.0.2.1/32"},
		{in: "::ffff:192.0.2.0/120", want: "192.0.2.0/24"},
		{in: "fe80::1%eth0", bad: true},
		{in: "10.0.0.0/33", bad: true},
		{in: "example.com", bad: true},
		{in: "", bad: true},
	} {
		got, err := ParsePrefix(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParsePrefix(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(tc.want) {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}
