package siem_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/siem"
)

func alertEvent() siem.Event {
	return siem.Event{ID: "e1", Kind: siem.KindAlert, Time: time.UnixMilli(1735787045123), Node: "node-a",
		Severity: intel.SeverityCritical, Reason: "member site-02 not heard from for 1m",
		Alert: &siem.AlertInfo{ID: "a1b2", Rule: "member-down", On: "node_down", State: "firing",
			Group: "key=12D3KooW", Since: time.UnixMilli(1735787000000), Repeat: 2, Events: 3},
		Sinks: []string{siem.SinkClassWebhook}}
}

// An alert's CEF record names its rule, state, group, ID and start, and
// carries its severity in the header.
func TestAlertCEF(t *testing.T) {
	hdr, ext := parseCEF(t, siem.FormatCEF(alertEvent(), "1.2.3"))
	if hdr[4] != "alert" || hdr[5] != "Alert firing: member-down" || hdr[6] != "10" {
		t.Errorf("CEF header %q", hdr)
	}
	want := map[string]string{"cat": "member-down", "outcome": "firing", "flexString1": "key=12D3KooW",
		"flexString1Label": "alertGroup", "flexString2": "a1b2", "flexString2Label": "alertId",
		"start": "1735787000000", "cn2": "2", "cn2Label": "reminder", "msg": "member site-02 not heard from for 1m",
		"dvchost": "node-a"}
	for k, v := range want {
		if ext[k] != v {
			t.Errorf("extension %s = %q, want %q", k, ext[k], v)
		}
	}
}

// The JSON of an alert (the webhook's body, the JSON lines) carries the
// alert; the routing list is not part of it.
func TestAlertJSON(t *testing.T) {
	b, err := json.Marshal(alertEvent())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Kind     string          `json:"kind"`
		Severity string          `json:"severity"`
		Alert    siem.AlertInfo  `json:"alert"`
		Sinks    json.RawMessage `json:"sinks"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Kind != "alert" || got.Severity != "critical" || got.Alert.Rule != "member-down" || got.Alert.State != "firing" ||
		got.Alert.Group != "key=12D3KooW" || got.Sinks != nil {
		t.Errorf("JSON %s", b)
	}
}

type namedSink struct {
	name string
	mu   sync.Mutex
	got  []string
}

func (s *namedSink) Name() string { return s.name }
func (s *namedSink) Write(_ context.Context, e siem.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, e.ID)
	return nil
}
func (s *namedSink) Close() error { return nil }
func (s *namedSink) ids() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.got, ",")
}

// An event listing sink classes goes to those sinks only; one listing
// none goes to every sink.
func TestEventSinksRoute(t *testing.T) {
	hook, udp, jl := &namedSink{name: "webhook"}, &namedSink{name: "syslog-udp"}, &namedSink{name: "jsonl"}
	out := siem.New([]siem.Sink{hook, udp, jl}, 16, nil)
	out.Start(t.Context())
	for _, e := range []siem.Event{
		{ID: "all"},
		{ID: "hook", Sinks: []string{siem.SinkClassWebhook}},
		{ID: "logs", Sinks: []string{siem.SinkClassSyslog, siem.SinkClassJSONLines}},
	} {
		out.Emit(e)
	}
	if err := out.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if hook.ids() != "all,hook" || udp.ids() != "all,logs" || jl.ids() != "all,logs" {
		t.Errorf("webhook %q, syslog %q, json lines %q", hook.ids(), udp.ids(), jl.ids())
	}
}
