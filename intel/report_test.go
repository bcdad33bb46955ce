package intel

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

func testReport() IndicatorReport {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	return IndicatorReport{
		Indicator:   Indicator{Type: Domain, Value: "c2.example.net"},
		Source:      "operator:alice",
		Confidence:  70,
		Labels:      []string{"botnet", "c2"},
		Technique:   "T1071.001",
		Description: "command and control of a known botnet",
		ValidFrom:   t0,
		ValidUntil:  t0.Add(24 * time.Hour),
	}
}

func TestIndicatorReportValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*IndicatorReport)
		field string // "" means valid
	}{
		{"valid", func(*IndicatorReport) {}, ""},
		{"no expiry", func(r *IndicatorReport) { r.ValidUntil = time.Time{} }, ""},
		{"no labels", func(r *IndicatorReport) { r.Labels = nil }, ""},
		{"bad indicator", func(r *IndicatorReport) { r.Indicator = Indicator{Type: IPv4, Value: "::1"} }, "indicator"},
		{"non-canonical indicator", func(r *IndicatorReport) { r.Indicator.Value = "C2.example.net" }, "indicator"},
		{"empty source", func(r *IndicatorReport) { r.Source = "" }, "source"},
		{"long source", func(r *IndicatorReport) { r.Source = strings.Repeat("s", MaxReportSource+1) }, "source"},
		{"control in source", func(r *IndicatorReport) { r.Source = "feed\nx" }, "source"},
		{"invalid utf-8 source", func(r *IndicatorReport) { r.Source = "\xff" }, "source"},
		{"negative confidence", func(r *IndicatorReport) { r.Confidence = -1 }, "confidence"},
		{"confidence above 100", func(r *IndicatorReport) { r.Confidence = 101 }, "confidence"},
		{"too many labels", func(r *IndicatorReport) {
			r.Labels = nil
			for i := range MaxReportLabels + 1 {
				r.Labels = append(r.Labels, strings.Repeat("l", i+1))
			}
		}, "labels"},
		{"empty label", func(r *IndicatorReport) { r.Labels = []string{"c2", ""} }, "labels[1]"},
		{"long label", func(r *IndicatorReport) { r.Labels = []string{strings.Repeat("l", MaxReportLabel+1)} }, "labels[0]"},
		{"repeated label", func(r *IndicatorReport) { r.Labels = []string{"c2", "c2"} }, "labels[1]"},
		{"long technique", func(r *IndicatorReport) { r.Technique = strings.Repeat("T", MaxReportTechnique+1) }, "technique"},
		{"long description", func(r *IndicatorReport) { r.Description = strings.Repeat("d", MaxReportDescription+1) }, "description"},
		{"invalid utf-8 description", func(r *IndicatorReport) { r.Description = "a\xffb" }, "description"},
		{"no valid_from", func(r *IndicatorReport) { r.ValidFrom = time.Time{} }, "valid_from"},
		{"valid_until before valid_from", func(r *IndicatorReport) { r.ValidUntil = r.ValidFrom.Add(-time.Second) }, "valid_until"},
		{"valid_until equal to valid_from", func(r *IndicatorReport) { r.ValidUntil = r.ValidFrom }, "valid_until"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testReport()
			tt.edit(&r)
			err := r.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidReport) {
				t.Fatalf("Validate() = %v, want ErrInvalidReport", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate() = %q, does not name %q", err, tt.field)
			}
		})
	}
}

func TestIndicatorReportActiveAt(t *testing.T) {
	r := testReport()
	for _, tt := range []struct {
		at   time.Time
		want bool
	}{
		{r.ValidFrom.Add(-time.Nanosecond), false},
		{r.ValidFrom, true},
		{r.ValidUntil.Add(-time.Nanosecond), true},
		{r.ValidUntil, false},
	} {
		if got := r.ActiveAt(tt.at); got != tt.want {
			t.Errorf("ActiveAt(%s) = %v, want %v", tt.at, got, tt.want)
		}
	}
	r.ValidUntil = time.Time{}
	if !r.ActiveAt(r.ValidFrom.Add(100 * 365 * 24 * time.Hour)) {
		t.Error("a report without valid_until expired")
	}
}

func TestDecodeIndicatorReportRoundTrip(t *testing.T) {
	k := testKey(t)
	want := testReport()
	b, err := SealJSON(k, KindIndicator, 7, want.ValidFrom, want)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeIndicatorReport(e)
	if err != nil {
		t.Fatal(err)
	}
	if got.Indicator != want.Indicator || got.Source != want.Source || got.Confidence != want.Confidence ||
		strings.Join(got.Labels, ",") != "botnet,c2" || got.Technique != want.Technique ||
		got.Description != want.Description || !got.ValidFrom.Equal(want.ValidFrom) || !got.ValidUntil.Equal(want.ValidUntil) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}

	// Without an expiry the field is left out and reads back as zero.
	want.ValidUntil = time.Time{}
	b, _ = SealJSON(k, KindIndicator, 8, want.ValidFrom, want)
	e, _ = Open(b)
	if strings.Contains(string(e.Payload), "valid_until") {
		t.Fatalf("payload %s carries a zero valid_until", e.Payload)
	}
	if got, err := DecodeIndicatorReport(e); err != nil || !got.ValidUntil.IsZero() {
		t.Fatalf("decode without expiry = %+v, %v", got, err)
	}
}

func TestDecodeIndicatorReportRejects(t *testing.T) {
	k := testKey(t)
	ts := time.Unix(1700000000, 0)
	valid := `{"indicator":{"type":"ipv4","value":"198.51.100.1"},"source":"feed-a","confidence":50,"valid_from":"2026-01-01T00:00:00Z"}`
	payloads := map[string]string{
		"not json":       `{`,
		"unknown field":  `{"indicator":{"type":"ipv4","value":"198.51.100.1"},"source":"feed-a","confidence":50,"valid_from":"2026-01-01T00:00:00Z","block":true}`,
		"trailing data":  valid + `{}`,
		"wrong types":    `{"indicator":"198.51.100.1","source":"feed-a"}`,
		"invalid fields": `{"indicator":{"type":"ipv4","value":"198.51.100.1"},"source":"","confidence":50,"valid_from":"2026-01-01T00:00:00Z"}`,
		"null":           `null`,
		"empty":          ``,
	}
	for name, p := range payloads {
		t.Run(name, func(t *testing.T) {
			b, err := Seal(k, KindIndicator, 1, ts, []byte(p))
			if err != nil {
				t.Fatal(err)
			}
			e, err := Open(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeIndicatorReport(e); !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeIndicatorReport(%s) = %v, want ErrMalformed", p, err)
			}
		})
	}
	b, _ := Seal(k, KindIndicator, 1, ts, []byte(valid))
	e, _ := Open(b)
	if _, err := DecodeIndicatorReport(e); err != nil {
		t.Fatalf("the valid payload of this table is refused: %v", err)
	}
	// A sighting is not a report, however well formed.
	b, _ = SealJSON(k, KindSighting, 2, ts, testSighting())
	e, _ = Open(b)
	if _, err := DecodeIndicatorReport(e); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decoding a sighting as a report = %v, want ErrMalformed", err)
	}
}

// FuzzDecodeIndicatorReport checks that no payload panics the decoder and
// that whatever it accepts validates and survives a round trip.
func FuzzDecodeIndicatorReport(f *testing.F) {
	f.Add([]byte(`{"indicator":{"type":"ipv4","value":"198.51.100.1"},"source":"feed-a","confidence":50,"valid_from":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"indicator":{"type":"domain","value":"c2.example.net"},"source":"operator:bob","confidence":90,"labels":["c2"],"valid_from":"2026-01-01T00:00:00Z","valid_until":"2026-02-01T00:00:00Z"}`))
	f.Add([]byte(`{"labels":[""]}`))
	f.Add([]byte(`null`))
	k := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	ts := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := Seal(k, KindIndicator, 1, ts, p)
		if err != nil {
			return
		}
		e, err := Open(b)
		if err != nil {
			t.Fatalf("open own envelope: %v", err)
		}
		r, err := DecodeIndicatorReport(e)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted report does not validate: %v", err)
		}
		b2, err := SealJSON(k, KindIndicator, 2, ts, r)
		if err != nil {
			t.Fatal(err)
		}
		e2, _ := Open(b2)
		if _, err := DecodeIndicatorReport(e2); err != nil {
			t.Fatalf("re-encoded report refused: %v", err)
		}
	})
}
