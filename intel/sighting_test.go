package intel

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSightingValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Sighting)
		want string // a part of the error; "" means valid
	}{
		{"valid", func(*Sighting) {}, ""},
		{"bad indicator", func(s *Sighting) { s.Indicator = Indicator{Type: IPv4, Value: "::1"} }, "ipv4"},
		{"non-canonical indicator", func(s *Sighting) { s.Indicator = Indicator{Type: Domain, Value: "Example.COM"} }, "not canonical"},
		{"empty indicator", func(s *Sighting) { s.Indicator = Indicator{} }, "indicator"},
		{"empty detector", func(s *Sighting) { s.Detector = "" }, "detector must be 1 to 128 bytes, got 0"},
		{"long detector", func(s *Sighting) { s.Detector = strings.Repeat("d", 129) }, "detector must be 1 to 128 bytes, got 129"},
		{"longest detector", func(s *Sighting) { s.Detector = strings.Repeat("d", 128) }, ""},
		{"long technique", func(s *Sighting) { s.Technique = strings.Repeat("T", 33) }, "technique is 33 bytes"},
		{"longest technique", func(s *Sighting) { s.Technique = strings.Repeat("T", 32) }, ""},
		{"no technique", func(s *Sighting) { s.Technique = "" }, ""},
		{"long site", func(s *Sighting) { s.Site = strings.Repeat("s", 129) }, "site is 129 bytes"},
		{"longest site", func(s *Sighting) { s.Site = strings.Repeat("s", 128) }, ""},
		{"negative confidence", func(s *Sighting) { s.Confidence = -1 }, "confidence -1 out of range"},
		{"confidence above 100", func(s *Sighting) { s.Confidence = 101 }, "confidence 101 out of range"},
		{"confidence 0", func(s *Sighting) { s.Confidence = 0 }, ""},
		{"confidence 100", func(s *Sighting) { s.Confidence = 100 }, ""},
		{"zero count", func(s *Sighting) { s.Count = 0 }, "count 0, want at least 1"},
		{"negative count", func(s *Sighting) { s.Count = -5 }, "count -5"},
		{"count 1", func(s *Sighting) { s.Count = 1 }, ""},
		{"no first_seen", func(s *Sighting) { s.FirstSeen = time.Time{} }, "first_seen and last_seen are required"},
		{"no last_seen", func(s *Sighting) { s.LastSeen = time.Time{} }, "first_seen and last_seen are required"},
		{"last_seen before first_seen", func(s *Sighting) { s.LastSeen = s.FirstSeen.Add(-time.Nanosecond) }, "last_seen 2026-11-28T11:59:59Z is before first_seen 2026-11-28T12:00:00Z"},
		{"last_seen equal to first_seen", func(s *Sighting) { s.LastSeen = s.FirstSeen }, ""},
		{"unknown severity", func(s *Sighting) { s.Severity = "urgent" }, `severity "urgent"`},
		{"severity case", func(s *Sighting) { s.Severity = "High" }, `severity "High"`},
		{"no severity", func(s *Sighting) { s.Severity = "" }, ""},
		{"low", func(s *Sighting) { s.Severity = SeverityLow }, ""},
		{"medium", func(s *Sighting) { s.Severity = SeverityMedium }, ""},
		{"critical", func(s *Sighting) { s.Severity = SeverityCritical }, ""},
		// The first problem found is reported: the indicator before the
		// fields, the fields before the severity.
		{"indicator first", func(s *Sighting) { s.Indicator, s.Count, s.Severity = Indicator{Type: "mac", Value: "x"}, 0, "x" }, "indicator"},
		{"fields before severity", func(s *Sighting) { s.Count, s.Severity = 0, "x" }, "count 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSighting()
			tt.edit(&s)
			err := s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid sighting rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidSighting) {
				t.Errorf("error %v does not wrap ErrInvalidSighting", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestSightingValidateKeepsIndicatorError(t *testing.T) {
	s := testSighting()
	s.Indicator = Indicator{Type: IPv4, Value: "300.1.1.1"}
	if err := s.Validate(); !errors.Is(err, ErrInvalidSighting) || !errors.Is(err, ErrInvalidIndicator) {
		t.Fatalf("got %v, want both ErrInvalidSighting and ErrInvalidIndicator", err)
	}
}

func TestCheckSightingAt(t *testing.T) {
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		first, last time.Duration // from at
		skew        time.Duration
		want        string // a part of the error; "" means accepted
	}{
		{"both before", -time.Minute, -time.Second, SightingSkew, ""},
		{"last at the envelope time", -time.Minute, 0, SightingSkew, ""},
		{"last within the skew", -time.Minute, time.Minute, SightingSkew, ""},
		{"last at the skew", -time.Minute, SightingSkew, SightingSkew, ""},
		{"last past the skew", -time.Minute, SightingSkew + time.Nanosecond, SightingSkew, "last_seen 2026-11-28T12:02:00.000000001Z is 2m0.000000001s after the envelope time 2026-11-28T12:00:00Z (skew 2m0s)"},
		{"last a day ahead", -time.Minute, 24 * time.Hour, SightingSkew, "last_seen 2026-11-29T12:00:00Z"},
		{"first past the skew", 3 * time.Minute, 3 * time.Minute, SightingSkew, "last_seen"},
		{"first alone past the skew", 3 * time.Minute, time.Minute, SightingSkew, "first_seen 2026-11-28T12:03:00Z"},
		{"no skew", -time.Minute, time.Nanosecond, 0, "(skew 0s)"},
		{"negative skew counts as none", -time.Minute, 0, -time.Hour, ""},
		{"negative skew, ahead", -time.Minute, time.Second, -time.Hour, "(skew 0s)"},
		{"long ago", -365 * 24 * time.Hour, -364 * 24 * time.Hour, SightingSkew, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSighting()
			s.FirstSeen, s.LastSeen = at.Add(tc.first), at.Add(tc.last)
			err := CheckSightingAt(s, at, tc.skew)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error with %q", tc.want)
			}
			if !errors.Is(err, ErrSightingFromFuture) || !errors.Is(err, ErrInvalidSighting) {
				t.Errorf("%v does not wrap ErrSightingFromFuture and ErrInvalidSighting", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestDecodeSightingAt(t *testing.T) {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	open := func(s Sighting) *Envelope {
		t.Helper()
		raw, err := SealJSON(key, KindSighting, 1, at, s)
		if err != nil {
			t.Fatal(err)
		}
		env, err := Open(raw)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	s := testSighting()
	s.FirstSeen, s.LastSeen = at.Add(-time.Minute), at.Add(time.Minute)
	if got, err := DecodeSightingAt(open(s), SightingSkew); err != nil || got.Detector != s.Detector {
		t.Fatalf("sighting within the skew: %+v, %v", got, err)
	}
	s.LastSeen = at.Add(time.Hour)
	_, err = DecodeSightingAt(open(s), SightingSkew)
	if !errors.Is(err, ErrSightingFromFuture) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("sighting an hour ahead: %v, want ErrSightingFromFuture and ErrMalformed", err)
	}
	if _, err := DecodeSighting(open(s)); err != nil {
		t.Fatalf("DecodeSighting alone checks no time: %v", err)
	}
	s.Count = 0
	if _, err := DecodeSightingAt(open(s), SightingSkew); !errors.Is(err, ErrMalformed) || errors.Is(err, ErrSightingFromFuture) {
		t.Fatalf("invalid sighting: %v, want ErrMalformed from validation first", err)
	}
}
