package intel

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/net/publicsuffix"
)

// ErrBelowFloor is wrapped by every refusal of a policy that crosses a
// safety floor.
var ErrBelowFloor = errors.New("safety floor")

// Floors are the safety floors that no mesh-wide or local policy crosses,
// checked where policies are committed (the FSM) and again where they are
// enforced (the responders):
//
//   - loopback, link-local, unspecified and multicast addresses are never
//     blocked (behind a local reverse proxy every client is 127.0.0.1);
//   - no block or allow is wider than MinIPv4Bits / MinIPv6Bits unless the
//     command is explicitly allowed to be wide (an admin operator's
//     signature);
//   - a domain block lies strictly below a public suffix (never "com",
//     "co.uk" or an unknown TLD).
//
// The checks are pure functions of the indicator and the floors, so every
// node reaches the same verdict on the same log entry. The public suffix
// list is the one compiled into the binary: nodes of one mesh should run
// the same release.
type Floors struct {
	// MinIPv4Bits is the shortest IPv4 prefix a policy may name (default
	// 16: at most a /16).
	MinIPv4Bits int `json:"min_ipv4_bits"`
	// MinIPv6Bits is the shortest IPv6 prefix a policy may name (default
	// 32).
	MinIPv6Bits int `json:"min_ipv6_bits"`
}

// Default floors.
const (
	DefaultMinIPv4Bits = 16
	DefaultMinIPv6Bits = 32
)

// DefaultFloors returns the default safety floors.
func DefaultFloors() Floors {
	return Floors{MinIPv4Bits: DefaultMinIPv4Bits, MinIPv6Bits: DefaultMinIPv6Bits}
}

// Validate checks that the floors are themselves sane.
func (f Floors) Validate() error {
	if f.MinIPv4Bits < 0 || f.MinIPv4Bits > 32 {
		return fmt.Errorf("min_ipv4_bits %d: want 0..32", f.MinIPv4Bits)
	}
	if f.MinIPv6Bits < 0 || f.MinIPv6Bits > 128 {
		return fmt.Errorf("min_ipv6_bits %d: want 0..128", f.MinIPv6Bits)
	}
	return nil
}

// FloorReason names why a policy was refused by a floor; metrics use it
// as a label.
type FloorReason string

// The floor reasons.
const (
	FloorNone       FloorReason = ""
	FloorLoopback   FloorReason = "loopback"
	FloorLinkLocal  FloorReason = "link_local"
	FloorUnspec     FloorReason = "unspecified"
	FloorMulticast  FloorReason = "multicast"
	FloorTooBroad   FloorReason = "too_broad"
	FloorPublicSuff FloorReason = "public_suffix"
)

// FloorError is the refusal of one indicator by one floor.
type FloorError struct {
	Indicator Indicator
	Reason    FloorReason
	Detail    string
}

func (e *FloorError) Error() string {
	return fmt.Sprintf("%s %s: %s (%s)", e.Indicator.Type, e.Indicator.Value, e.Detail, e.Reason)
}

func (e *FloorError) Unwrap() error { return ErrBelowFloor }

// CheckBlock returns a *FloorError when blocking ind would cross a floor.
// wide lifts the breadth floor only (an admin operator's command); the
// address-class floors hold for everyone.
func (f Floors) CheckBlock(ind Indicator, wide bool) error {
	if p, ok := ind.Prefix(); ok {
		if r, d := classOf(p); r != FloorNone {
			return &FloorError{Indicator: ind, Reason: r, Detail: d}
		}
		if !wide {
			return f.checkBreadth(ind, p)
		}
		return nil
	}
	if ind.Type == Domain {
		return checkSuffix(ind)
	}
	return nil
}

// CheckAllow returns a *FloorError when an allow of ind is wider than the
// floors permit (an allow of 0.0.0.0/0 would lift every block). Allowing
// loopback or link-local is harmless and permitted.
func (f Floors) CheckAllow(ind Indicator, wide bool) error {
	if p, ok := ind.Prefix(); ok && !wide {
		return f.checkBreadth(ind, p)
	}
	if ind.Type == Domain && !wide {
		return checkSuffix(ind)
	}
	return nil
}

func (f Floors) checkBreadth(ind Indicator, p netip.Prefix) error {
	min := f.MinIPv6Bits
	if p.Addr().Is4() {
		min = f.MinIPv4Bits
	}
	if p.Bits() < min {
		return &FloorError{Indicator: ind, Reason: FloorTooBroad,
			Detail: fmt.Sprintf("a /%d is wider than the /%d floor", p.Bits(), min)}
	}
	return nil
}

// classOf names the address class of p that may never be blocked, or
// FloorNone. A prefix is refused when it overlaps such a class at all.
func classOf(p netip.Prefix) (FloorReason, string) {
	for _, c := range neverBlocked {
		if p.Overlaps(c.prefix) {
			return c.reason, "overlaps " + c.prefix.String()
		}
	}
	return FloorNone, ""
}

var neverBlocked = []struct {
	prefix netip.Prefix
	reason FloorReason
}{
	{netip.MustParsePrefix("127.0.0.0/8"), FloorLoopback},
	{netip.MustParsePrefix("::1/128"), FloorLoopback},
	{netip.MustParsePrefix("169.254.0.0/16"), FloorLinkLocal},
	{netip.MustParsePrefix("fe80::/10"), FloorLinkLocal},
	{netip.MustParsePrefix("0.0.0.0/32"), FloorUnspec},
	{netip.MustParsePrefix("::/128"), FloorUnspec},
	{netip.MustParsePrefix("224.0.0.0/4"), FloorMulticast},
	{netip.MustParsePrefix("ff00::/8"), FloorMulticast},
}

// checkSuffix refuses a domain that is a public suffix itself (or an
// unknown top-level label): blocking it would sinkhole everyone below it.
func checkSuffix(ind Indicator) error {
	suffix, _ := publicsuffix.PublicSuffix(ind.Value)
	if suffix == ind.Value {
		return &FloorError{Indicator: ind, Reason: FloorPublicSuff,
			Detail: "is a public suffix; name a domain below it"}
	}
	return nil
}
