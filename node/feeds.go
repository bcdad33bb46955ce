package node

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/feeds"
	"github.com/meshward/meshward/internal/atomicfile"
)

// Threat feeds (intel.feeds, applied again after a Reload, and feeds
// added at runtime through the admin API) are fetched by one server each
// and published as signed indicator reports. Which server: rendezvous hashing of the feed's name over the
// current Raft voters (consensus.Roster), the highest hash of name and
// voter ID winning. Every server computes the same answer from the
// committed roster without talking to the others; a change of leader moves
// no feed, and a voter that leaves moves only its own feeds. Edges and
// standby servers fetch nothing, and nobody fetches before the node is on
// a roster with voters (a single founding node is its own voter). Feeds
// should be configured alike on every server: a server that lacks a feed
// assigned to it does not fetch it ("meshward intel feeds list" shows each
// feed's fetcher). When the voters change (checked every voterCheck) the
// runner is woken, and a feed's new fetcher polls it at once; around such
// a change two servers may publish the same entries, which is harmless:
// reports are intelligence, and duplicates merge.
//
// Feeds publish reports and nothing else: they never propose a block.

// Publication limits of the feed runner: reports per second over all
// feeds, and per poll of one feed (the rest is deferred and counted).
const (
	feedPublishRate = 200
	feedMaxPerPoll  = 20_000
)

// feedsPart runs the node's feeds.
type feedsPart struct {
	n      *Node
	runner *feeds.Runner
	path   string // the runtime feeds, data_dir/feeds.json

	mu      sync.Mutex // guards runtime and serializes changes of the feed set
	runtime []feeds.Config
}

// startFeeds loads the runtime feeds and starts the runner.
func (n *Node) startFeeds(ctx context.Context) error {
	d := n.deps
	p := &feedsPart{n: n, path: filepath.Join(d.Config.DataDir, "feeds.json")}
	rt, err := loadRuntimeFeeds(p.path)
	if err != nil {
		return err
	}
	p.runtime = rt
	dir := filepath.Join(d.Config.DataDir, "feeds")
	removeLeftovers(dir, d.Logger)
	r, err := feeds.NewRunner(ctx, feeds.RunnerOptions{
		Dir:        dir,
		TempDir:    dir,
		Publish:    n.publishFeedReport,
		Assigned:   func(name string) bool { id, _ := n.feedFetcher(name); return id == d.ID },
		Rate:       feedPublishRate,
		MaxPerPoll: feedMaxPerPoll,
		Registerer: d.Metrics,
		Logger:     d.Logger.With("part", "feeds"),
		Now:        d.Options.Clock,
	})
	if err != nil {
		return err
	}
	p.runner = r
	n.feeds = p
	r.Set(p.all())
	n.group.Go(p.watchVoters)
	return nil
}

// voterCheck is how often the feed runner looks for a change of voters.
const voterCheck = 2 * time.Second

// watchVoters wakes the runner when the voters change, so that a feed
// whose fetcher changed is fetched by its new one at once, and hands it
// the feeds in force when a reload changed intel.feeds.
func (p *feedsPart) watchVoters(ctx context.Context) {
	t := time.NewTicker(voterCheck)
	defer t.Stop()
	var (
		last    string
		version uint64
		looked  bool
	)
	applied := p.configFeeds()
	for {
		if cur := p.configFeeds(); !reflect.DeepEqual(cur, applied) {
			applied = cur
			p.runner.Set(p.all())
			p.n.log.Info("feeds of the configuration reloaded", "count", len(cur))
		}
		// The roster is looked at only when it changed, and not copied:
		// while a mesh of a thousand members forms it changes every
		// second, and every node copying and sorting it each time was a
		// fifth of the machine.
		if v := p.n.deps.Consensus.RosterVersion(); !looked || v != version {
			looked, version = true, v
			if cur := strings.Join(p.n.deps.Consensus.RosterVoters(), ","); cur != last {
				last = cur
				p.runner.Wake()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SyncFeed fetches a feed now on this node, in full, and publishes what
// changed.
func (n *Node) SyncFeed(ctx context.Context, name string) (feeds.PollResult, error) {
	return newAdminAPI(n).SyncFeed(ctx, name)
}

// AddFeed adds or replaces a runtime feed (kept in data_dir/feeds.json).
func (n *Node) AddFeed(ctx context.Context, c feeds.Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	_, err := newAdminAPI(n).AddFeed(ctx, c)
	return err
}

// FeedFetcher is the node that fetches feed name on schedule.
func (n *Node) FeedFetcher(name string) string {
	id, _ := n.feedFetcher(name)
	return id
}

// FeedStatus lists the node's feeds.
func (n *Node) FeedStatus() []feeds.Status {
	if n.feeds == nil {
		return nil
	}
	return n.feeds.runner.Status()
}

// Close stops the runner and waits for its goroutines.
func (p *feedsPart) Close() error { return p.runner.Close() }

func (n *Node) publishFeedReport(ctx context.Context, r intel.IndicatorReport) error {
	_, err := n.PublishReport(ctx, r)
	return err
}

// feedFetcher is the voter that fetches feed name on schedule: rendezvous
// hashing over the current voters. none is true while the roster has no
// voter (before the mesh is founded or joined): nobody fetches then.
func (n *Node) feedFetcher(name string) (id string, none bool) {
	voters := n.deps.Consensus.RosterVoters()
	if len(voters) == 0 {
		return "", true
	}
	return rendezvous(name, voters), false
}

// rendezvous returns the member of ids with the highest hash of key and
// the member's ID (highest random weight).
func rendezvous(key string, ids []string) string {
	var best string
	var bestH [32]byte
	for _, id := range ids {
		h := sha256.Sum256([]byte(key + "\x00" + id))
		if best == "" || string(h[:]) > string(bestH[:]) {
			best, bestH = id, h
		}
	}
	return best
}

// configFeeds are the feeds of the configuration in force (Reload
// replaces them).
func (p *feedsPart) configFeeds() []feeds.Config { return p.n.live.Load().cfg.Intel.Feeds }

// all is the feeds in force: the configuration file's, then the runtime
// ones not named like one of the file's.
func (p *feedsPart) all() []feeds.Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.configFeeds())
	for _, c := range p.runtime {
		if !p.inConfig(c.Name) {
			out = append(out, c)
		}
	}
	return out
}

func (p *feedsPart) inConfig(name string) bool {
	return slices.ContainsFunc(p.configFeeds(), func(c feeds.Config) bool { return c.Name == name })
}

func loadRuntimeFeeds(path string) ([]feeds.Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runtime feeds: %w", err)
	}
	var list []feeds.Config
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("runtime feeds %s: %w", path, err)
	}
	if err := feeds.ValidateList(list); err != nil {
		return nil, fmt.Errorf("runtime feeds %s: %w", path, err)
	}
	return list, nil
}

// feedAPI is the FeedService of the admin API.
var _ admin.FeedService = (*adminAPI)(nil)

// Feeds lists the feeds with their origin and fetcher.
func (a *adminAPI) Feeds(context.Context) ([]admin.Feed, error) {
	p := a.statusAPI.n.feeds
	if p == nil {
		return nil, fmt.Errorf("%w: the feed runner is not started", admin.ErrUnavailable)
	}
	var out []admin.Feed
	for _, st := range p.runner.Status() {
		origin := "runtime"
		if p.inConfig(st.Config.Name) {
			origin = "config"
		}
		id, _ := a.statusAPI.n.feedFetcher(st.Config.Name)
		out = append(out, admin.Feed{Status: st, Origin: origin, Fetcher: id})
	}
	return out, nil
}

// AddFeed adds or replaces a runtime feed and keeps the list on disk.
func (a *adminAPI) AddFeed(ctx context.Context, c feeds.Config) (admin.Feed, error) {
	p := a.statusAPI.n.feeds
	if p == nil {
		return admin.Feed{}, fmt.Errorf("%w: the feed runner is not started", admin.ErrUnavailable)
	}
	if p.inConfig(c.Name) {
		return admin.Feed{}, fmt.Errorf("%w: feed %q is defined in the configuration file", admin.ErrRefused, c.Name)
	}
	p.mu.Lock()
	next := slices.DeleteFunc(slices.Clone(p.runtime), func(x feeds.Config) bool { return x.Name == c.Name })
	next = append(next, c)
	if err := feeds.ValidateList(append(slices.Clone(p.configFeeds()), next...)); err != nil {
		p.mu.Unlock()
		return admin.Feed{}, fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	if err := saveRuntimeFeeds(p.path, next); err != nil {
		p.mu.Unlock()
		return admin.Feed{}, err
	}
	p.runtime = next
	p.mu.Unlock()
	p.runner.Set(p.all())
	list, err := a.Feeds(ctx)
	if err != nil {
		return admin.Feed{}, err
	}
	for _, f := range list {
		if f.Config.Name == c.Name {
			return f, nil
		}
	}
	return admin.Feed{}, fmt.Errorf("feed %q not running after it was added", c.Name)
}

// RemoveFeed removes a runtime feed.
func (a *adminAPI) RemoveFeed(_ context.Context, name string) error {
	p := a.statusAPI.n.feeds
	if p == nil {
		return fmt.Errorf("%w: the feed runner is not started", admin.ErrUnavailable)
	}
	if p.inConfig(name) {
		return fmt.Errorf("%w: feed %q is defined in the configuration file; remove it there", admin.ErrRefused, name)
	}
	p.mu.Lock()
	i := slices.IndexFunc(p.runtime, func(x feeds.Config) bool { return x.Name == name })
	if i < 0 {
		p.mu.Unlock()
		return fmt.Errorf("%w: no runtime feed %q", admin.ErrNotFound, name)
	}
	next := slices.Delete(slices.Clone(p.runtime), i, i+1)
	if err := saveRuntimeFeeds(p.path, next); err != nil {
		p.mu.Unlock()
		return err
	}
	p.runtime = next
	p.mu.Unlock()
	p.runner.Set(p.all())
	return nil
}

// SyncFeed fetches a feed now on this node.
func (a *adminAPI) SyncFeed(ctx context.Context, name string) (feeds.PollResult, error) {
	p := a.statusAPI.n.feeds
	if p == nil {
		return feeds.PollResult{}, fmt.Errorf("%w: the feed runner is not started", admin.ErrUnavailable)
	}
	res, err := p.runner.Sync(ctx, name)
	if errors.Is(err, feeds.ErrUnknownFeed) {
		return res, fmt.Errorf("%w: %w", admin.ErrNotFound, err)
	}
	return res, err
}

func saveRuntimeFeeds(path string, list []feeds.Config) error {
	if list == nil {
		list = []feeds.Config{}
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save runtime feeds: %w", err)
	}
	return nil
}

// removeLeftovers deletes the temporary copies and state files a node
// stopped in the middle of a poll left in the feeds directory.
func removeLeftovers(dir string, log *slog.Logger) {
	for _, pat := range []string{"meshward-feed-*", "meshward-misp-*", "meshward-taxii-*", ".*.state-*"} {
		matches, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				log.Warn("remove a feed's leftover copy", "path", m, "err", err)
			}
		}
	}
}
