package feeds

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
)

// fakePublisher records what a runner publishes; fail makes it refuse.
type fakePublisher struct {
	mu   sync.Mutex
	got  []intel.IndicatorReport
	fail error
}

func (p *fakePublisher) publish(_ context.Context, r intel.IndicatorReport) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	if err := r.Validate(); err != nil {
		return err
	}
	p.got = append(p.got, r)
	return nil
}

func (p *fakePublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

// newTestRunner holds one feed of a local file that its scheduled loop
// never polls (not assigned here): the test drives it with Sync.
func newTestRunner(t *testing.T, dir string, pub *fakePublisher, cfg Config, maxPerPoll int) (*Runner, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := NewRunner(context.Background(), RunnerOptions{
		Dir: filepath.Join(dir, "state"), TempDir: t.TempDir(), Publish: pub.publish, Registerer: reg,
		Assigned: func(string) bool { return false }, Rate: 1e6, MaxPerPoll: maxPerPoll,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := ValidateList([]Config{cfg}); err != nil {
		t.Fatal(err)
	}
	r.Set([]Config{cfg})
	return r, reg
}

func writeFeed(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func sync1(t *testing.T, r *Runner, name string) PollResult {
	t.Helper()
	res, err := r.Sync(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A feed's entries are published once; a re-poll of the same content
// publishes nothing; a changed entry is published; the feed's name,
// confidence, TTL and TLP are on every report; a restart keeps what was
// published.
func TestRunnerPublishesChangesOnly(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "list.txt")
	writeFeed(t, src, "# list", "203.0.113.1", "203.0.113.2", "evil.example", "not a value!")
	cfg := Config{Name: "list", Path: src, Confidence: 65, TTL: 48 * time.Hour, TLP: "green", Labels: []string{"botnet"}}
	pub := &fakePublisher{}
	r, reg := newTestRunner(t, dir, pub, cfg, 0)

	res := sync1(t, r, "list")
	if res.Result != ResultOK || res.Published != 3 || res.Entries != 3 || res.Skipped[SkipInvalid] != 1 {
		t.Fatalf("first poll %+v", res)
	}
	for _, rep := range pub.got {
		if rep.Source != "list" || rep.Confidence != 65 || rep.ValidUntil.Sub(rep.ValidFrom) != 48*time.Hour ||
			!containsStr(rep.Labels, "tlp:green") || !containsStr(rep.Labels, "botnet") {
			t.Errorf("report %+v", rep)
		}
	}
	res = sync1(t, r, "list")
	if res.Result != ResultOK || res.Published != 0 || res.Unchanged != 3 || pub.count() != 3 {
		t.Fatalf("re-poll of the same content %+v, %d published in all", res, pub.count())
	}
	writeFeed(t, src, "203.0.113.1", "203.0.113.2", "evil.example", "203.0.113.3")
	res = sync1(t, r, "list")
	if res.Published != 1 || res.Unchanged != 3 || pub.got[3].Indicator.Value != "203.0.113.3" {
		t.Fatalf("poll after one addition %+v", res)
	}
	if got := counter(t, reg, "meshward_feed_published_total", "list"); got != 4 {
		t.Errorf("meshward_feed_published_total = %v, want 4", got)
	}
	if got := counter(t, reg, "meshward_feed_fetch_total", "list", ResultOK); got != 3 {
		t.Errorf("meshward_feed_fetch_total{ok} = %v, want 3", got)
	}
	if got := counter(t, reg, "meshward_feed_last_success_timestamp_seconds", "list"); got < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("meshward_feed_last_success_timestamp_seconds = %v", got)
	}
	r.Close()

	// A new runner over the same state directory publishes nothing.
	pub2 := &fakePublisher{}
	r2, _ := newTestRunner(t, dir, pub2, cfg, 0)
	if res := sync1(t, r2, "list"); res.Published != 0 || res.Unchanged != 4 {
		t.Fatalf("after a restart %+v", res)
	}
}

// counter is the value of the counter name{labels...} in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := len(m.GetLabel()) == len(labels)
			for i, l := range m.GetLabel() {
				ok = ok && l.GetValue() == labels[i]
			}
			if ok {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// All or nothing: an invalid value at the end of a strict feed, or a
// malformed record at the end of any feed, publishes none of the valid
// entries before it.
func TestRunnerAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "strict.txt")
	writeFeed(t, src, "203.0.113.1", "203.0.113.2", "203.0.113.300")
	pub := &fakePublisher{}
	r, reg := newTestRunner(t, dir, pub, Config{Name: "strict", Path: src, Strict: true}, 0)
	res := sync1(t, r, "strict")
	if res.Result != ResultParseError || !strings.Contains(res.Error, "strict.txt:3:") || pub.count() != 0 {
		t.Fatalf("strict feed with a bad last line: %+v, %d published", res, pub.count())
	}
	if got := counter(t, reg, "meshward_feed_fetch_total", "strict", ResultParseError); got != 1 {
		t.Errorf("parse errors counted %v", got)
	}

	csvSrc := filepath.Join(dir, "broken.csv")
	writeFeed(t, csvSrc, "ip", "203.0.113.1", "203.0.113.2", `"203.0.113.3`)
	pub2 := &fakePublisher{}
	r2, _ := newTestRunner(t, t.TempDir(), pub2, Config{Name: "broken", Path: csvSrc, Format: FormatCSV, CSV: CSVOptions{Header: true}}, 0)
	if res := sync1(t, r2, "broken"); res.Result != ResultParseError || pub2.count() != 0 {
		t.Fatalf("csv with an unterminated quote at the end: %+v, %d published", res, pub2.count())
	}
}

// Past MaxPerPoll entries are deferred and counted; the next poll
// fetches the feed again in full and publishes them.
func TestRunnerDefersPastTheLimit(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "big.txt")
	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf("198.51.100.%d", i+1))
	}
	writeFeed(t, src, lines...)
	pub := &fakePublisher{}
	r, reg := newTestRunner(t, dir, pub, Config{Name: "big", Path: src}, 2)
	want := []PollResult{{Published: 2, Deferred: 3}, {Published: 2, Unchanged: 2, Deferred: 1}, {Published: 1, Unchanged: 4}, {Unchanged: 5}}
	for i, w := range want {
		res := sync1(t, r, "big")
		if res.Published != w.Published || res.Unchanged != w.Unchanged || res.Deferred != w.Deferred {
			t.Fatalf("poll %d: %+v, want %+v", i, res, w)
		}
	}
	if got := counter(t, reg, "meshward_feed_deferred_total", "big"); got != 4 {
		t.Errorf("meshward_feed_deferred_total = %v, want 4", got)
	}
	if pub.count() != 5 {
		t.Errorf("%d published, want 5", pub.count())
	}
}

// A publication that fails stops the poll, counted; what was published
// before stays recorded and the rest is published by the next poll.
func TestRunnerPublishFailure(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "f.txt")
	writeFeed(t, src, "203.0.113.1", "203.0.113.2")
	pub := &fakePublisher{fail: errors.New("gossip.indicators is off")}
	r, reg := newTestRunner(t, dir, pub, Config{Name: "f", Path: src}, 0)
	if res := sync1(t, r, "f"); res.Result != ResultPublishError || !strings.Contains(res.Error, "gossip.indicators is off") {
		t.Fatalf("%+v", res)
	}
	if got := counter(t, reg, "meshward_feed_fetch_total", "f", ResultPublishError); got != 1 {
		t.Errorf("publish errors counted %v", got)
	}
	pub.mu.Lock()
	pub.fail = nil
	pub.mu.Unlock()
	if res := sync1(t, r, "f"); res.Published != 2 {
		t.Fatalf("after the failure %+v", res)
	}
}

// A feed assigned to another node is not polled by the schedule, and the
// skip is counted; Sync of an unknown feed is an error.
func TestRunnerNotAssigned(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "f.txt")
	writeFeed(t, src, "203.0.113.1")
	pub := &fakePublisher{}
	_, reg := newTestRunner(t, dir, pub, Config{Name: "f", Path: src}, 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mfs, _ := reg.Gather()
		found := false
		for _, mf := range mfs {
			found = found || mf.GetName() == "meshward_feed_not_assigned_total"
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the skipped poll was not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if pub.count() != 0 {
		t.Fatalf("%d published by a node the feed is not assigned to", pub.count())
	}
	r, _ := newTestRunner(t, t.TempDir(), pub, Config{Name: "g", Path: src}, 0)
	if _, err := r.Sync(context.Background(), "nope"); !errors.Is(err, ErrUnknownFeed) {
		t.Fatalf("sync of an unknown feed: %v", err)
	}
}

// A scheduled poll runs at once on a node the feed is assigned to.
func TestRunnerSchedule(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "f.txt")
	writeFeed(t, src, "203.0.113.1", "203.0.113.2")
	pub := &fakePublisher{}
	r, err := NewRunner(context.Background(), RunnerOptions{Dir: dir, Publish: pub.publish})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Set([]Config{{Name: "f", Path: src}})
	deadline := time.Now().Add(10 * time.Second)
	var st []Status
	for {
		st = r.Status()
		if len(st) == 1 && st[0].Last.Result != "" {
			break // the poll has ended
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first scheduled poll did not end: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !st[0].Assigned || st[0].Last.Published != 2 || pub.count() != 2 || st[0].LastPoll.IsZero() {
		t.Fatalf("status %+v, %d published", st, pub.count())
	}
	r.Set(nil)
	if len(r.Status()) != 0 {
		t.Fatal("feed not removed")
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg   Config
		field string
	}{
		{Config{Name: "Bad Name", Path: "/x"}, "name"},
		{Config{Name: "a"}, "url"},
		{Config{Name: "a", URL: "https://x.example/", Path: "/x"}, "path"},
		{Config{Name: "a", URL: "http://x.example/"}, "url"},
		{Config{Name: "a", Path: "/x", Format: "xml"}, "format"},
		{Config{Name: "a", Path: "/x", Format: FormatTAXII}, "url"},
		{Config{Name: "a", Path: "/x", TokenFile: "/t"}, "token_file"},
		{Config{Name: "a", Path: "/x", Format: FormatJSONL}, "jsonl"},
		{Config{Name: "a", Path: "/x", Format: FormatCSV, CSV: CSVOptions{Delimiter: "::"}}, "csv"},
		{Config{Name: "a", Path: "/x", Interval: time.Millisecond}, "interval"},
		{Config{Name: "a", Path: "/x", Confidence: 101}, "confidence"},
		{Config{Name: "a", Path: "/x", TTL: 400 * 24 * time.Hour}, "ttl"},
		{Config{Name: "a", Path: "/x", TLP: "purple"}, "tlp"},
		{Config{Name: "a", Path: "/x", Labels: []string{""}}, "labels[0]"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.field+":") {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.field)
		}
	}
	if err := ValidateList([]Config{{Name: "a", Path: "/x"}, {Name: "a", Path: "/y"}}); err == nil || !strings.Contains(err.Error(), "[1].name") {
		t.Errorf("duplicate names: %v", err)
	}
	if err := (Config{Name: "ok", Path: "/x"}).Validate(); err != nil {
		t.Error(err)
	}
}

// A feed that becomes this node's (Wake after a change of voters) is
// polled at once, not at its next recheck.
func TestRunnerWakeOnAssignment(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "f.txt")
	writeFeed(t, src, "203.0.113.1")
	pub := &fakePublisher{}
	var mine atomic.Bool
	reg := prometheus.NewRegistry()
	r, err := NewRunner(context.Background(), RunnerOptions{Dir: dir, Publish: pub.publish, Registerer: reg,
		Assigned: func(string) bool { return mine.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Set([]Config{{Name: "f", Path: src, Interval: 24 * time.Hour}})
	waitUntil(t, "the unassigned poll to be counted", func() bool {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "meshward_feed_not_assigned_total" {
				return true
			}
		}
		return false
	})
	if pub.count() != 0 {
		t.Fatal("published while not assigned")
	}
	mine.Store(true) // the voters changed: the feed is this node's now
	r.Wake()
	waitUntil(t, "a poll", func() bool { st := r.Status(); return len(st) == 1 && st[0].Last.Result != "" })
	if pub.count() != 1 {
		t.Fatalf("%d published, want 1", pub.count())
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
