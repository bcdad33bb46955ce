package admin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/feeds"
)

// FeedService is the threat feeds a node runs: those of its configuration
// file and those added at runtime through this API (kept in its data
// directory). A Node that does not implement it answers the feed routes
// with 503. Feeds only publish indicator reports; they never block.
type FeedService interface {
	// Feeds lists the feeds with their last poll.
	Feeds(ctx context.Context) ([]Feed, error)
	// AddFeed adds (or replaces) a runtime feed; an invalid one wraps
	// ErrInvalid naming the field, one named like a feed of the
	// configuration file wraps ErrRefused.
	AddFeed(ctx context.Context, c feeds.Config) (Feed, error)
	// RemoveFeed removes a runtime feed (ErrNotFound when there is none;
	// ErrRefused for a feed of the configuration file).
	RemoveFeed(ctx context.Context, name string) error
	// SyncFeed fetches a feed now on this node, in full, and publishes
	// what changed, returning the poll's counts.
	SyncFeed(ctx context.Context, name string) (feeds.PollResult, error)
}

// Feed is a feed as the API shows it.
type Feed struct {
	feeds.Status
	// Origin is "config" (the configuration file) or "runtime" (added
	// through the API).
	Origin string `json:"origin"`
	// Fetcher is the ID of the server that fetches the feed on schedule
	// (rendezvous hashing of the feed's name over the voters), "" when
	// unknown.
	Fetcher string `json:"fetcher,omitempty"`
}

// ImportRequest is a batch of indicator reports to publish, each with its
// own source (a feed's name): what `meshward intel import` sends once it
// has read its whole input.
type ImportRequest struct {
	Reports []intel.IndicatorReport `json:"reports"`
}

// ImportResult says how many reports of a batch were published.
type ImportResult struct {
	Published int `json:"published"`
}

// Bounds of the intel routes.
const (
	// MaxImportBatch is the most reports one import request carries.
	MaxImportBatch = 500
	// defaultExportLimit and maxExportLimit bound GET /v1/intel/reports.
	defaultExportLimit = 10_000
	maxExportLimit     = 100_000
)

func (s *Server) feedSvc() (FeedService, error) {
	fs, ok := s.statusSvc.(FeedService)
	if !ok {
		return nil, fmt.Errorf("%w: this node runs no feeds", ErrUnavailable)
	}
	return fs, nil
}

func getFeeds(s *Server, c *call) (any, error) {
	fs, err := s.feedSvc()
	if err != nil {
		return nil, err
	}
	return fs.Feeds(c.r.Context())
}

func postFeed(s *Server, c *call) (any, error) {
	fs, err := s.feedSvc()
	if err != nil {
		return nil, err
	}
	var cfg feeds.Config
	if err := decode(c, &cfg); err != nil {
		return nil, err
	}
	c.target = cfg.Name
	c.detail = fmt.Sprintf("source=%s format=%s", cfg.Source(), cfg.Format)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: feed: %w", ErrInvalid, err)
	}
	return fs.AddFeed(c.r.Context(), cfg)
}

func deleteFeed(s *Server, c *call) (any, error) {
	fs, err := s.feedSvc()
	if err != nil {
		return nil, err
	}
	name := c.r.PathValue("name")
	c.target = name
	if err := fs.RemoveFeed(c.r.Context(), name); err != nil {
		return nil, feedError(err)
	}
	return map[string]string{"removed": name}, nil
}

func postFeedSync(s *Server, c *call) (any, error) {
	fs, err := s.feedSvc()
	if err != nil {
		return nil, err
	}
	name := c.r.PathValue("name")
	c.target = name
	res, err := fs.SyncFeed(c.r.Context(), name)
	if err != nil {
		return nil, feedError(err)
	}
	c.detail = fmt.Sprintf("result=%s entries=%d published=%d unchanged=%d deferred=%d", res.Result, res.Entries, res.Published, res.Unchanged, res.Deferred)
	return res, nil
}

// postImport publishes a batch of reports: all are checked before any is
// published.
func postImport(s *Server, c *call) (any, error) {
	var req ImportRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if len(req.Reports) == 0 || len(req.Reports) > MaxImportBatch {
		return nil, fmt.Errorf("%w: reports: %d of them, want 1 to %d", ErrInvalid, len(req.Reports), MaxImportBatch)
	}
	for i, r := range req.Reports {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("%w: reports[%d]: %w", ErrInvalid, i, err)
		}
	}
	c.target = req.Reports[0].Source
	res := ImportResult{}
	for i, r := range req.Reports {
		if _, err := s.reportSvc.PublishReport(c.r.Context(), r); err != nil {
			c.detail = fmt.Sprintf("published=%d of %d", res.Published, len(req.Reports))
			return nil, fmt.Errorf("publish reports[%d] (%d published before it): %w", i, res.Published, err)
		}
		res.Published++
	}
	c.detail = fmt.Sprintf("published=%d", res.Published)
	return res, nil
}

// getIntelReports lists up to limit reports (default 10,000, at most
// 100,000), most recently received first, for export.
func getIntelReports(s *Server, c *call) (any, error) {
	n, err := limitParam(c, defaultExportLimit, maxExportLimit)
	if err != nil {
		return nil, err
	}
	want, err := boolParam(c, "active")
	if err != nil {
		return nil, err
	}
	recs, err := s.reportSvc.Reports(c.r.Context(), n)
	if err != nil {
		return nil, fmt.Errorf("reports: %w", err)
	}
	now := s.now()
	out := make([]Report, 0, len(recs))
	for _, r := range recs {
		rep := reportFrom(r, nil, now)
		if want != nil && rep.Active != *want {
			continue
		}
		out = append(out, rep)
	}
	return out, nil
}

// feedError maps the runner's errors onto the API's.
func feedError(err error) error {
	if errors.Is(err, feeds.ErrUnknownFeed) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Feeds lists the node's feeds.
func (c *Client) Feeds(ctx context.Context) ([]Feed, error) {
	var out []Feed
	return out, c.do(ctx, "GET", "/v1/feeds", nil, nil, &out)
}

// AddFeed adds or replaces a runtime feed.
func (c *Client) AddFeed(ctx context.Context, cfg feeds.Config) (Feed, error) {
	var out Feed
	return out, c.do(ctx, "POST", "/v1/feeds", nil, cfg, &out)
}

// RemoveFeed removes a runtime feed.
func (c *Client) RemoveFeed(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/feeds/"+url.PathEscape(name), nil, nil, nil)
}

// SyncFeed fetches a feed now and returns what the poll did.
func (c *Client) SyncFeed(ctx context.Context, name string) (feeds.PollResult, error) {
	var out feeds.PollResult
	return out, c.do(ctx, "POST", "/v1/feeds/"+url.PathEscape(name)+"/sync", nil, nil, &out)
}

// Import publishes a batch of at most MaxImportBatch reports.
func (c *Client) Import(ctx context.Context, reports []intel.IndicatorReport) (ImportResult, error) {
	var out ImportResult
	return out, c.do(ctx, "POST", "/v1/intel/import", nil, ImportRequest{Reports: reports}, &out)
}

// IntelReports returns up to limit reports the node holds, newest first;
// active, when set, keeps only those that are (or are not) valid now.
func (c *Client) IntelReports(ctx context.Context, limit int, active *bool) ([]Report, error) {
	q := limitQuery(limit)
	if active != nil {
		q.Set("active", strconv.FormatBool(*active))
	}
	var out []Report
	return out, c.do(ctx, "GET", "/v1/intel/reports", q, nil, &out)
}
