package intel

import (
	"errors"
	"testing"
)

func TestFloors(t *testing.T) {
	f := DefaultFloors()
	for _, tc := range []struct {
		ind         string
		wide        bool
		block       FloorReason
		allowRefuse bool
	}{
		{ind: "203.0.113.7"},
		{ind: "198.51.0.0/16"},
		{ind: "198.0.0.0/15", block: FloorTooBroad, allowRefuse: true},
		{ind: "198.0.0.0/15", wide: true},
		{ind: "0.0.0.0/0", block: FloorLoopback, allowRefuse: true},
		{ind: "0.0.0.0/0", wide: true, block: FloorLoopback},
		{ind: "::/0", block: FloorLoopback, allowRefuse: true},
		{ind: "0.0.0.0/5", block: FloorUnspec, allowRefuse: true},
		{ind: "8.0.0.0/5", block: FloorTooBroad, allowRefuse: true},
		{ind: "127.0.0.1", block: FloorLoopback},
		{ind: "127.5.0.0/16", block: FloorLoopback},
		{ind: "::1", block: FloorLoopback},
		{ind: "169.254.1.1", block: FloorLinkLocal},
		{ind: "fe80::1", block: FloorLinkLocal},
		{ind: "0.0.0.0", block: FloorUnspec},
		{ind: "::", block: FloorUnspec},
		{ind: "239.1.1.1", block: FloorMulticast},
		{ind: "ff02::1", block: FloorMulticast},
		{ind: "2001:db8::/32"},
		{ind: "2001:db8::/31", block: FloorTooBroad, allowRefuse: true},
		{ind: "example.com"},
		{ind: "evil.example.co.uk"},
		{ind: "com", block: FloorPublicSuff, allowRefuse: true},
		{ind: "co.uk", block: FloorPublicSuff, allowRefuse: true},
		{ind: "internal", block: FloorPublicSuff, allowRefuse: true},
		{ind: "https://example.com/x"},
	} {
		ind, err := ParseIndicator(tc.ind)
		if err != nil {
			t.Fatalf("ParseIndicator(%q): %v", tc.ind, err)
		}
		err = f.CheckBlock(ind, tc.wide)
		var fe *FloorError
		switch {
		case tc.block == FloorNone && err != nil:
			t.Errorf("CheckBlock(%s, wide=%v) = %v, want nil", tc.ind, tc.wide, err)
		case tc.block != FloorNone && (!errors.As(err, &fe) || fe.Reason != tc.block || !errors.Is(err, ErrBelowFloor)):
			t.Errorf("CheckBlock(%s, wide=%v) = %v, want reason %s", tc.ind, tc.wide, err, tc.block)
		}
		err = f.CheckAllow(ind, tc.wide)
		if (err != nil) != tc.allowRefuse {
			t.Errorf("CheckAllow(%s, wide=%v) = %v, want refused=%v", tc.ind, tc.wide, err, tc.allowRefuse)
		}
	}
}

func TestFloorsValidate(t *testing.T) {
	if err := DefaultFloors().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []Floors{{MinIPv4Bits: 33}, {MinIPv6Bits: -1}, {MinIPv6Bits: 129}} {
		if f.Validate() == nil {
			t.Errorf("%+v validated", f)
		}
	}
}
