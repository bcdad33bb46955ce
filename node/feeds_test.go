package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel/feeds"
	"github.com/meshward/meshward/store"
)

// intel.feeds is read from the YAML file and every problem names its
// field.
func TestIntelFeedsConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
intel:
  feeds:
    - name: abuse-ips
      url: https://feeds.example/ips.txt
      interval: 30m
      confidence: 70
      ttl: 48h
      tlp: amber
    - name: c2
      path: /srv/feeds/c2.csv
      format: csv
      csv: {column_name: dst_ip, delimiter: ";"}
`))
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Intel.Feeds
	if len(f) != 2 || f[0].Interval != 30*time.Minute || f[0].TTL != 48*time.Hour || f[1].CSV.ColumnName != "dst_ip" || f[1].CSV.Delimiter != ";" {
		t.Fatalf("feeds %+v", f)
	}
	for yml, field := range map[string]string{
		"intel:\n  feeds:\n    - {name: x, url: 'http://feeds.example/'}\n":        "intel.feeds[0].url",
		"intel:\n  feeds:\n    - {name: x, path: /x, format: rss}\n":               "intel.feeds[0].format",
		"intel:\n  feeds:\n    - {name: x, path: /x}\n    - {name: x, path: /y}\n": "intel.feeds[1].name",
		"intel:\n  feeds:\n    - {name: x, path: /x, confidence: 200}\n":           "intel.feeds[0].confidence",
		"intel:\n  feeds:\n    - {name: x, path: /x, formt: csv}\n":                "formt",
		"intel:\n  feeds:\n    - {name: x, path: /x, format: jsonl}\n":             "intel.feeds[0].jsonl",
	} {
		_, err := ParseConfig([]byte(yml))
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%q: %v, want an error naming %s", yml, err, field)
		}
	}
}

// A feed of the configuration file on a one-node mesh: its entries are
// published as reports whose source is the feed's name; a re-poll of the
// same content publishes nothing; a runtime feed is added, kept on disk,
// synced and removed; a feed of the file cannot be removed at runtime; a
// feed added to the file by a reload runs.
func TestSingleNodeFeed(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(src, []byte("# test list\n198.51.100.1\n198.51.100.2\nbad.example.\nnot-a-value!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startSingle(t, func(c *Config) {
		c.Intel.Feeds = []feeds.Config{{Name: "solo-list", Path: src, Confidence: 60, TTL: time.Hour}}
	})
	waitFor(t, "the feed's first poll", func() bool { st := n.FeedStatus(); return len(st) == 1 && st[0].Last.Result != "" })
	if got := len(reportsFrom(t, n, "solo-list")); got != 3 {
		t.Fatalf("%d reports of the feed, want 3", got)
	}
	for _, r := range reportsFrom(t, n, "solo-list") {
		if r.Origin != n.ID() || r.Report.Confidence != 60 || r.Report.ValidUntil.Sub(r.Report.ValidFrom) != time.Hour {
			t.Errorf("report %+v", r)
		}
	}
	before := n.Stats().IndicatorReports
	res, err := n.SyncFeed(context.Background(), "solo-list")
	if err != nil || res.Result != feeds.ResultOK || res.Published != 0 || res.Unchanged != 3 {
		t.Fatalf("re-poll: %+v, %v", res, err)
	}
	if n.Stats().IndicatorReports != before {
		t.Fatalf("the re-poll published %d reports", n.Stats().IndicatorReports-before)
	}

	// The node's /metrics registry counts the polls and the publications.
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetValue()
			}
			seen[key] = m.GetCounter().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"meshward_feed_published_total,solo-list":       3,
		"meshward_feed_unchanged_total,solo-list":       3,
		"meshward_feed_fetch_total,solo-list,ok":        2,
		"meshward_feed_skipped_total,solo-list,invalid": 2, // one a poll
	} {
		if seen[key] != want {
			t.Errorf("%s = %v, want %v", key, seen[key], want)
		}
	}

	api := newAdminAPI(n)
	ctx := context.Background()
	if err := api.RemoveFeed(ctx, "solo-list"); !errors.Is(err, admin.ErrRefused) {
		t.Fatalf("removing a feed of the file: %v, want ErrRefused", err)
	}
	if _, err := api.AddFeed(ctx, feeds.Config{Name: "solo-list", Path: src}); !errors.Is(err, admin.ErrRefused) {
		t.Fatalf("adding a feed named like one of the file: %v, want ErrRefused", err)
	}
	src2 := filepath.Join(dir, "extra.csv")
	if err := os.WriteFile(src2, []byte("when,ip\n2026-12-01,203.0.113.99\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := feeds.Config{Name: "extra", Path: src2, Format: feeds.FormatCSV, CSV: feeds.CSVOptions{ColumnName: "ip"}, Interval: 24 * time.Hour}
	if _, err := api.AddFeed(ctx, extra); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the runtime feed's report", func() bool { return len(reportsFrom(t, n, "extra")) == 1 })
	if b, err := os.ReadFile(filepath.Join(n.deps.Config.DataDir, "feeds.json")); err != nil || !strings.Contains(string(b), `"extra"`) {
		t.Fatalf("runtime feeds on disk: %s, %v", b, err)
	}
	list, err := api.Feeds(ctx)
	if err != nil || len(list) != 2 || list[0].Config.Name != "extra" || list[0].Origin != "runtime" || list[1].Origin != "config" || list[1].Fetcher != n.ID() {
		t.Fatalf("feeds %+v, %v", list, err)
	}
	if err := api.RemoveFeed(ctx, "extra"); err != nil {
		t.Fatal(err)
	}
	if _, err := api.SyncFeed(ctx, "extra"); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("sync of a removed feed: %v, want ErrNotFound", err)
	}
	if err := api.RemoveFeed(ctx, "extra"); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("removing it again: %v, want ErrNotFound", err)
	}

	// A reload that adds a feed to intel.feeds runs it.
	src3 := filepath.Join(dir, "reloaded.txt")
	if err := os.WriteFile(src3, []byte("203.0.113.55\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(func() (Config, error) {
		c := n.live.Load().cfg
		c.Intel.Feeds = append(slices.Clone(c.Intel.Feeds), feeds.Config{Name: "reloaded", Path: src3})
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reloaded feed's report", func() bool { return len(reportsFrom(t, n, "reloaded")) == 1 })
	if list, err := api.Feeds(ctx); err != nil || len(list) != 2 || list[0].Config.Name != "reloaded" || list[0].Origin != "config" {
		t.Fatalf("feeds after the reload %+v, %v", list, err)
	}
}

func reportsFrom(t *testing.T, n *Node, source string) []store.ReportRecord {
	t.Helper()
	recs, err := n.Store().IndicatorReports(1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.ReportRecord
	for _, r := range recs {
		if r.Report.Source == source {
			out = append(out, r)
		}
	}
	return out
}
