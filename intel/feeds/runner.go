package feeds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/routine"
)

// Parser returns the parse of a fetched copy at path in format: each call
// reads it from the start, so it can run twice (Check, then publish).
func Parser(c Config, path string, o Options) (func(fn func(Entry) error) (Stats, error), error) {
	openFile := func() (*os.File, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, &Error{Pos: Position{File: o.File}, Reason: "format", Err: err}
		}
		return f, nil
	}
	withFile := func(p func(f *os.File, fn func(Entry) error) (Stats, error)) func(fn func(Entry) error) (Stats, error) {
		return func(fn func(Entry) error) (Stats, error) {
			f, err := openFile()
			if err != nil {
				return Stats{}, err
			}
			defer f.Close()
			return p(f, fn)
		}
	}
	switch c.Format {
	case FormatPlain, "":
		return withFile(func(f *os.File, fn func(Entry) error) (Stats, error) { return ParsePlain(f, o, fn) }), nil
	case FormatCSV:
		return withFile(func(f *os.File, fn func(Entry) error) (Stats, error) { return ParseCSV(f, c.CSV, o, fn) }), nil
	case FormatJSONL:
		return withFile(func(f *os.File, fn func(Entry) error) (Stats, error) { return ParseJSONL(f, c.JSONL, o, fn) }), nil
	case FormatSTIX:
		return withFile(func(f *os.File, fn func(Entry) error) (Stats, error) { return ParseSTIX(f, o, fn) }), nil
	case FormatTAXII:
		return withFile(func(f *os.File, fn func(Entry) error) (Stats, error) { return ParseSpool(f, o, fn) }), nil
	case FormatMISP:
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return withFile(func(f *os.File, fn func(Entry) error) (Stats, error) { return ParseMISPEvent(f, o, fn) }), nil
		}
		return func(fn func(Entry) error) (Stats, error) { return ParseMISP(DirOpener(os.DirFS(path)), o, fn) }, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNotSupported, c.Format)
}

// PublishFunc signs and sends one report mesh-wide.
type PublishFunc func(ctx context.Context, r intel.IndicatorReport) error

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	// Dir keeps each feed's state (validators and the digests of what it
	// published) across polls and restarts.
	Dir string
	// TempDir holds fetched copies ("" means os.TempDir()).
	TempDir string
	// Publish sends a report; required.
	Publish PublishFunc
	// Assigned says whether this node is the one that fetches a feed;
	// nil means it is for every feed. Consulted before every scheduled
	// poll; Sync ignores it.
	Assigned func(feed string) bool
	// Rate bounds the reports published per second over all feeds
	// (default 200), MaxPerPoll those of one poll (default 20,000): the
	// rest are deferred to the next poll, which comes sooner.
	Rate       float64
	MaxPerPoll int
	// Client makes HTTPS requests (nil: the Fetcher's default).
	Client     *http.Client
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
	// RetryBase is the first delay after a failure (default 30s); the
	// delay doubles up to the feed's interval.
	RetryBase time.Duration
	// Rand feeds the backoff's jitter (nil: math/rand/v2).
	Rand func() float64
}

// Poll outcomes besides the fetch results.
const (
	ResultParseError   = "parse_error"
	ResultPublishError = "publish_error"
)

// PollResult is what one poll did.
type PollResult struct {
	Result    string         `json:"result"`
	Error     string         `json:"error,omitempty"`
	Entries   int            `json:"entries"`
	Published int            `json:"published"`
	Unchanged int            `json:"unchanged"`
	Deferred  int            `json:"deferred"`
	Skipped   map[string]int `json:"skipped,omitempty"`
	Samples   []string       `json:"samples,omitempty"`
}

// Status is a feed as the runner holds it.
type Status struct {
	Config   Config     `json:"config"`
	Assigned bool       `json:"assigned"`
	LastPoll time.Time  `json:"last_poll,omitzero"`
	NextPoll time.Time  `json:"next_poll,omitzero"`
	Failures int        `json:"failures"`
	Last     PollResult `json:"last"`
}

// Runner fetches feeds on their intervals and publishes their entries as
// reports: each feed in a goroutine of its own, so a slow or failing feed
// delays only itself, and nothing here ever blocks traffic or proposes a
// policy.
type Runner struct {
	opts    RunnerOptions
	m       *runnerMetrics
	limiter *rate.Limiter
	group   *routine.Group
	log     *slog.Logger

	mu     sync.Mutex // guards feeds and closed
	feeds  map[string]*feedRun
	closed bool
}

type feedRun struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{} // Wake: check the assignment again
	pollMu sync.Mutex    // one poll of a feed at a time

	mu     sync.Mutex // guards status and soon
	status Status
	soon   bool // the last poll deferred entries or failed to publish
}

// NewRunner builds a runner with no feeds; Set gives it some.
func NewRunner(ctx context.Context, opts RunnerOptions) (*Runner, error) {
	if opts.Publish == nil {
		return nil, errors.New("feed runner: Publish is required")
	}
	if opts.Dir == "" {
		return nil, errors.New("feed runner: Dir is required")
	}
	if opts.Rate <= 0 {
		opts.Rate = 200
	}
	if opts.MaxPerPoll <= 0 {
		opts.MaxPerPoll = 20_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 30 * time.Second
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("feed runner: %w", err)
	}
	r := &Runner{
		opts:    opts,
		m:       newRunnerMetrics(),
		limiter: rate.NewLimiter(rate.Limit(opts.Rate), max(1, int(opts.Rate))),
		group:   routine.New(ctx),
		log:     opts.Logger,
		feeds:   make(map[string]*feedRun),
	}
	if opts.Registerer != nil {
		if err := r.m.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("feed runner metrics: %w", err)
		}
	}
	return r, nil
}

// Set makes list the feeds in force: new ones start (their first poll at
// once), changed ones restart, missing ones stop. The list must have
// passed ValidateList.
func (r *Runner) Set(list []Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	want := make(map[string]Config, len(list))
	for _, c := range list {
		want[c.Name] = c.WithDefaults()
	}
	for name, f := range r.feeds {
		if c, ok := want[name]; !ok || !reflect.DeepEqual(c, f.cfg) {
			f.cancel()
			<-f.done
			delete(r.feeds, name)
		}
	}
	for name, c := range want {
		if _, ok := r.feeds[name]; ok {
			continue
		}
		f := &feedRun{cfg: c, done: make(chan struct{}), wake: make(chan struct{}, 1), status: Status{Config: c}}
		ctx, cancel := context.WithCancel(r.group.Context())
		f.cancel = cancel
		r.feeds[name] = f
		if !r.group.Go(func(context.Context) { defer close(f.done); r.loop(ctx, f) }) {
			close(f.done)
		}
	}
}

// Status lists the feeds, by name.
func (r *Runner) Status() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, 0, len(r.feeds))
	for _, f := range r.feeds {
		f.mu.Lock()
		st := f.status
		f.mu.Unlock()
		if r.opts.Assigned != nil {
			st.Assigned = r.opts.Assigned(f.cfg.Name)
		} else {
			st.Assigned = true
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Name < out[j].Config.Name })
	return out
}

// ErrUnknownFeed: Sync of a feed the runner does not hold.
var ErrUnknownFeed = errors.New("no such feed")

// Sync polls a feed now, on this node whatever the assignment, and
// fetches it in full (no conditional request), waiting for the poll to
// end.
func (r *Runner) Sync(ctx context.Context, name string) (PollResult, error) {
	r.mu.Lock()
	f, ok := r.feeds[name]
	r.mu.Unlock()
	if !ok {
		return PollResult{}, fmt.Errorf("%w: %q", ErrUnknownFeed, name)
	}
	res := r.poll(ctx, f, true)
	return res, nil
}

// Close stops every feed and waits for their goroutines.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.group.Close()
	return nil
}

// loop polls a feed on its interval, sooner after a failure (backoff) or
// a poll that deferred entries. While the feed is assigned to another
// node it only rechecks, on Wake or every minute at most, and polls as
// soon as it becomes this node's.
func (r *Runner) loop(ctx context.Context, f *feedRun) {
	c := f.cfg
	bo := Backoff{Base: min(r.opts.RetryBase, c.Interval), Max: c.Interval, Rand: r.opts.Rand}
	recheck := min(c.Interval, time.Minute)
	due := time.Now() // the first poll at once
	for {
		t := time.NewTimer(max(0, time.Until(due)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-f.wake:
			t.Stop()
			continue // due or not, the top of the loop decides
		}
		if !c.IsEnabled() {
			due = time.Now().Add(c.Interval)
			continue
		}
		if r.opts.Assigned != nil && !r.opts.Assigned(c.Name) {
			r.m.notAssigned.WithLabelValues(c.Name).Inc()
			f.setNext(time.Time{})
			// Still due: wait for a change of assignment.
			t := time.NewTimer(recheck)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-f.wake:
				t.Stop()
			}
			continue
		}
		res := r.poll(ctx, f, false)
		if ctx.Err() != nil {
			return
		}
		wait := c.Interval
		f.mu.Lock()
		switch {
		case res.Result != ResultOK && res.Result != ResultNotModified:
			wait = bo.Delay(f.status.Failures)
		case f.soon:
			wait = max(MinInterval, min(c.Interval, time.Minute))
		}
		f.status.NextPoll = r.opts.Now().Add(wait)
		f.mu.Unlock()
		due = time.Now().Add(wait)
	}
}

// Wake has every feed check again whether it is this node's to fetch
// (after a change of the voters); a feed that became this node's and is
// due polls at once. It never blocks.
func (r *Runner) Wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.feeds {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

func (f *feedRun) setNext(t time.Time) {
	f.mu.Lock()
	f.status.NextPoll = t
	f.mu.Unlock()
}

// poll fetches a feed, checks all of it, then publishes what changed.
func (r *Runner) poll(ctx context.Context, f *feedRun, force bool) (res PollResult) {
	f.pollMu.Lock()
	defer f.pollMu.Unlock()
	c := f.cfg
	now := r.opts.Now()
	defer func() {
		r.m.fetch.WithLabelValues(c.Name, res.Result).Inc()
		if res.Result == ResultOK || res.Result == ResultNotModified {
			r.m.lastSuccess.WithLabelValues(c.Name).Set(float64(now.Unix()))
		}
		f.mu.Lock()
		f.status.LastPoll = now
		f.status.Last = res
		if res.Result == ResultOK || res.Result == ResultNotModified {
			f.status.Failures = 0
		} else {
			f.status.Failures++
		}
		f.mu.Unlock()
		lvl := slog.LevelDebug
		if res.Error != "" {
			lvl = slog.LevelWarn
		}
		r.log.Log(ctx, lvl, "feed polled", "feed", c.Name, "result", res.Result, "entries", res.Entries,
			"published", res.Published, "unchanged", res.Unchanged, "deferred", res.Deferred, "err", res.Error)
	}()
	st, err := loadState(r.opts.Dir, c.Name)
	if err != nil {
		r.log.Warn("feed state unreadable; starting afresh", "feed", c.Name, "err", err)
		st = feedState{}
	}
	prev := st.Validators
	f.mu.Lock()
	soon := f.soon
	f.mu.Unlock()
	if force || soon || republishDue(st.set, now, c.TTL) {
		prev = Validators{}
	}
	fetcher := &Fetcher{Client: r.opts.Client, Timeout: c.Timeout, MaxBytes: c.MaxBytes, TempDir: r.opts.TempDir, UserAgent: "meshward-feeds"}
	var got *Fetched
	switch c.Format {
	case FormatMISP:
		got, err = fetcher.FetchMISP(ctx, c.Source(), prev)
	case FormatTAXII:
		var token string
		if c.TokenFile != "" {
			b, rerr := os.ReadFile(c.TokenFile)
			if rerr != nil {
				return PollResult{Result: ResultLocal, Error: fmt.Sprintf("token_file: %v", rerr)}
			}
			token = strings.TrimSpace(string(b))
		}
		got, err = fetcher.FetchTAXII(ctx, c.Source(), token, c.Username)
	default:
		got, err = fetcher.Fetch(ctx, c.Source(), prev)
	}
	if err != nil {
		return PollResult{Result: ResultOf(err), Error: err.Error()}
	}
	if got.NotModified {
		return PollResult{Result: ResultNotModified}
	}
	defer got.Remove()
	parse, err := Parser(c, got.Path, Options{File: c.Source(), Feed: c.Name, Strict: c.Strict})
	if err != nil {
		return PollResult{Result: ResultParseError, Error: err.Error()}
	}
	// First pass: all of it must parse, or nothing is published.
	stats, err := Check(parse)
	if err != nil {
		r.countSkips(c.Name, stats)
		return PollResult{Result: ResultParseError, Error: err.Error(), Entries: stats.Entries, Skipped: stats.Skipped, Samples: stats.Samples}
	}
	res = PollResult{Result: ResultOK, Entries: stats.Entries, Skipped: stats.Skipped, Samples: stats.Samples}
	r.m.entries.WithLabelValues(c.Name).Add(float64(stats.Entries))
	r.countSkips(c.Name, stats)

	next := make(digestSet, 0, min(stats.Entries, c.MaxEntries))
	ttlSec := int64(c.TTL / time.Second)
	overLimit, invalid := 0, 0
	errPublish := errors.New("publish")
	var pubErr error
	_, err = parse(func(e Entry) error {
		rep := e.Report(c.Name, c.Confidence, c.TTL, now)
		if e.TLP == "" && c.TLP != "" {
			tlp, _ := ParseTLP(c.TLP)
			rep.Labels = append([]string{"tlp:" + tlp}, rep.Labels...)
		}
		for _, l := range c.Labels {
			if len(rep.Labels) < intel.MaxReportLabels && !containsStr(rep.Labels, l) {
				rep.Labels = append(rep.Labels, l)
			}
		}
		if err := rep.Validate(); err != nil {
			invalid++
			return nil
		}
		d := digest(rep)
		if at, ok := st.set.find(d); ok && now.Unix()-at < ttlSec/2 {
			res.Unchanged++
			next = append(next, digestRec{h: d, at: at})
			return nil
		}
		if len(next) >= c.MaxEntries {
			overLimit++
			return nil
		}
		if res.Published >= r.opts.MaxPerPoll {
			res.Deferred++
			return nil
		}
		if err := r.limiter.Wait(ctx); err != nil {
			pubErr = err
			return errPublish
		}
		if err := r.opts.Publish(ctx, rep); err != nil {
			pubErr = err
			return errPublish
		}
		res.Published++
		next = append(next, digestRec{h: d, at: now.Unix()})
		return nil
	})
	r.m.published.WithLabelValues(c.Name).Add(float64(res.Published))
	r.m.unchanged.WithLabelValues(c.Name).Add(float64(res.Unchanged))
	r.m.deferred.WithLabelValues(c.Name).Add(float64(res.Deferred))
	if overLimit > 0 || invalid > 0 {
		if res.Skipped == nil {
			res.Skipped = map[string]int{}
		}
		if overLimit > 0 {
			res.Skipped["over_limit"] += overLimit
			r.m.skipped.WithLabelValues(c.Name, "over_limit").Add(float64(overLimit))
		}
		if invalid > 0 {
			res.Skipped["invalid_report"] += invalid
			r.m.skipped.WithLabelValues(c.Name, "invalid_report").Add(float64(invalid))
		}
	}
	// What was published is kept even when the pass stopped part way;
	// the validators only when it ran to the end with nothing deferred,
	// so that the next poll fetches the feed again in full otherwise.
	complete := err == nil && res.Deferred == 0
	save := feedState{set: next.sort()}
	if complete {
		save.Validators = got.Validators
	} else if err != nil {
		save.set = mergeSets(st.set, save.set)
	}
	if serr := saveState(r.opts.Dir, c.Name, save); serr != nil {
		r.log.Error("save feed state", "feed", c.Name, "err", serr)
	}
	f.mu.Lock()
	f.soon = !complete
	f.mu.Unlock()
	if err != nil {
		if errors.Is(err, errPublish) {
			err = pubErr
		}
		res.Result, res.Error = ResultPublishError, err.Error()
		if ctx.Err() != nil {
			res.Result = ResultTimeout
		}
	}
	return res
}

// republishDue reports whether an entry of set was published more than
// half a TTL ago: then the feed is fetched in full even if unchanged, so
// that its reports are renewed before they expire.
func republishDue(set digestSet, now time.Time, ttl time.Duration) bool {
	limit := now.Unix() - int64(ttl/time.Second)/2
	for _, d := range set {
		if d.at <= limit {
			return true
		}
	}
	return false
}

// mergeSets keeps the records of old that next lacks (a pass stopped
// before reaching them).
func mergeSets(old, next digestSet) digestSet {
	out := append(digestSet(nil), next...)
	for _, d := range old {
		if _, ok := next.find(d.h); !ok {
			out = append(out, d)
		}
	}
	return out.sort()
}

func (r *Runner) countSkips(feed string, st Stats) {
	for reason, n := range st.Skipped {
		r.m.skipped.WithLabelValues(feed, metricReason(reason)).Add(float64(n))
	}
}

// metricReasons are the skip reasons kept as metric labels; other MISP
// and STIX types are counted as "type:other".
var metricReasons = map[string]bool{
	SkipInvalid: true, SkipEmpty: true, SkipNotIDS: true, SkipDeleted: true, SkipTooLong: true, SkipNotValue: true,
	"type:email-src": true, "type:email-dst": true, "type:filename": true, "type:vulnerability": true, "type:as": true,
	"type:text": true, "type:comment": true, "type:link": true, "type:user-agent": true, "type:port": true,
	"type:malware": true, "type:relationship": true, "type:attack-pattern": true, "type:identity": true,
}

func metricReason(r string) string {
	if metricReasons[r] {
		return r
	}
	return "type:other"
}

type runnerMetrics struct {
	fetch       *prometheus.CounterVec
	entries     *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	published   *prometheus.CounterVec
	unchanged   *prometheus.CounterVec
	deferred    *prometheus.CounterVec
	notAssigned *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
}

func newRunnerMetrics() *runnerMetrics {
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	return &runnerMetrics{
		fetch:       cv("meshward_feed_fetch_total", "Feed polls by result: ok, not_modified, http_status, network, timeout, too_large, local_error, parse_error, publish_error.", "feed", "result"),
		entries:     cv("meshward_feed_entries_total", "Valid entries read from feeds.", "feed"),
		skipped:     cv("meshward_feed_skipped_total", "Feed values skipped, by reason.", "feed", "reason"),
		published:   cv("meshward_feed_published_total", "Indicator reports published from feeds.", "feed"),
		unchanged:   cv("meshward_feed_unchanged_total", "Feed entries not published again because an identical report is still fresh.", "feed"),
		deferred:    cv("meshward_feed_deferred_total", "Feed entries deferred to a later poll by the publication limits.", "feed"),
		notAssigned: cv("meshward_feed_not_assigned_total", "Scheduled polls skipped because another server fetches the feed.", "feed"),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshward_feed_last_success_timestamp_seconds",
			Help: "When a feed was last polled successfully (ok or not modified), in Unix seconds."}, []string{"feed"}),
	}
}

func (m *runnerMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.fetch, m.entries, m.skipped, m.published, m.unchanged, m.deferred, m.notAssigned, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
