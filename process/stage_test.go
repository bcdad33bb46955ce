package process

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// Two nodes: A detected the indicator 4 s after the first log line, B
// received it 2 s after; the block committed 5 s after the detection, took
// effect on A at 6 s and on B at 9 s; A's analyst acknowledged at 60 s.
func twoNodes() []Record {
	return []Record{
		{Indicator: "ipv4:203.0.113.7", Node: "A", Site: "paris", Rule: "ssh-bruteforce", Severity: "high",
			Detections: []string{"d1"}, FirstEvent: at(-4), Detected: at(0), Received: at(0), Committed: at(5), Enforced: at(6), Acked: at(60)},
		{Indicator: "ipv4:203.0.113.7", Node: "B", Site: "lyon", Rule: "ssh-bruteforce", Severity: "medium",
			FirstEvent: at(-4), Detected: at(0.5), Received: at(2), Committed: at(5.5), Enforced: at(9)},
	}
}

func TestIncidentDurationsEveryNode(t *testing.T) {
	incs := Merge(twoNodes(), 2)
	if len(incs) != 1 {
		t.Fatalf("%d incidents, want 1", len(incs))
	}
	inc := incs[0]
	if inc.Site != "paris" || inc.Severity != "high" || inc.Detection != "d1" || inc.Expected != 2 {
		t.Errorf("incident %+v: want site paris (the earliest detection), severity high, detection d1, expected 2", inc)
	}
	want := map[Stage]time.Duration{
		StageDetect: 4 * time.Second, StageShare: 2 * time.Second, StageDecide: 5 * time.Second,
		StageEnforce: 9 * time.Second, StageTriage: 60 * time.Second, StageRemediate: 9 * time.Second,
	}
	got := inc.Durations()
	for s, d := range want {
		if got[s] != d {
			t.Errorf("stage %s: %v, want %v", s, got[s], d)
		}
	}
	if len(got) != len(want) {
		t.Errorf("durations %v, want %v", got, want)
	}
}

// With a third node expected and silent, sharing and enforcing are not
// done: "every node" is not reached.
func TestIncidentNotDoneUntilEveryNode(t *testing.T) {
	inc := Merge(twoNodes(), 3)[0]
	for _, s := range []Stage{StageShare, StageEnforce, StageRemediate} {
		if d, ok := inc.Duration(s); ok {
			t.Errorf("stage %s done (%v) with 2 of 3 nodes", s, d)
		}
	}
	if d, _ := inc.Duration(StageDecide); d != 5*time.Second {
		t.Errorf("decide %v, want 5s (one commit is enough)", d)
	}
	// An outside ticket closed at 20 s remediates it all the same, and
	// a stage ending before it starts (clocks) counts zero.
	inc.ClosedOutside = at(20)
	if d, ok := inc.Duration(StageRemediate); !ok || d != 20*time.Second {
		t.Errorf("remediate %v %v, want 20s from the closed ticket", d, ok)
	}
	inc.TriagedOutside = at(-1)
	if d, ok := inc.Duration(StageTriage); !ok || d != 0 {
		t.Errorf("triage %v %v, want 0 (ticket before the detection)", d, ok)
	}
}

func TestMergeIntoKeepsEarliest(t *testing.T) {
	r := Record{Indicator: "x", Received: at(5), Severity: "low"}
	if !r.MergeInto(Record{Received: at(3), Committed: at(7), Severity: "critical", Detections: []string{"a", "a"}}) {
		t.Fatal("no change reported")
	}
	if !r.Received.Equal(at(3)) || !r.Committed.Equal(at(7)) || r.Severity != "critical" || len(r.Detections) != 1 {
		t.Errorf("merged %+v", r)
	}
	if r.MergeInto(Record{Received: at(4)}) {
		t.Error("a later time changed the record")
	}
}
