package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/meshward/meshward/process"
	"github.com/meshward/meshward/process/report"
)

// ProcessService is the node's process measurement (package process):
// the stage durations of its incidents, the playbook's breaches, and the
// outside events it is told of. A node without it answers 503.
type ProcessService interface {
	// ProcessSummary measures the incidents detected in the last since,
	// grouped by process.BySite, ByRule or ByDay ("" for none).
	ProcessSummary(ctx context.Context, since time.Duration, by string) (process.Summary, error)
	// ProcessBreaches lists the expectations' breaches, open and closed.
	ProcessBreaches(ctx context.Context) ([]process.Breach, error)
	// ProcessEvent takes in an outside event's JSON body; a duplicate
	// returns the event stored first and added false. Refusals are
	// *process.Rejection errors.
	ProcessEvent(ctx context.Context, body []byte) (ev process.Stored, added bool, err error)
	// ProcessExport is everything the node recorded of the process, for
	// a report merging several nodes.
	ProcessExport(ctx context.Context) (process.Export, error)
}

// Why a process query was refused (meshward_admin_requests_rejected_total).
const (
	reasonBadSince = "bad_since" // since not a duration or days, or out of bounds (400)
	reasonBadBy    = "bad_by"    // by not site, rule or day (400)
)

// Bounds of the since query parameter.
const (
	defaultProcessSince = 7 * 24 * time.Hour
	maxProcessSince     = 400 * 24 * time.Hour
)

func (s *Server) processSvc() (ProcessService, error) {
	p, ok := s.opts.Node.(ProcessService)
	if !ok {
		return nil, fmt.Errorf("%w: this node does not measure its process", ErrUnavailable)
	}
	return p, nil
}

// ParseSince reads a period as the since parameter takes it: a Go
// duration (36h, 90m) or a number of days (7d).
func ParseSince(v string) (time.Duration, error) {
	if v == "" {
		return defaultProcessSince, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("since %q: want a duration (36h) or days (7d)", v)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, fmt.Errorf("since %q: want a duration (36h) or days (7d)", v)
		}
	}
	if d <= 0 || d > maxProcessSince {
		return 0, fmt.Errorf("since %q: want more than 0 and at most %s", v, maxProcessSince)
	}
	return d, nil
}

// getProcess answers the stage percentiles of the incidents of the last
// since (default 7d), grouped by the by parameter (site, rule or day).
func getProcess(s *Server, c *call) (any, error) {
	svc, err := s.processSvc()
	if err != nil {
		return nil, err
	}
	q := c.r.URL.Query()
	since, err := ParseSince(q.Get("since"))
	if err != nil {
		return nil, rejected(reasonBadSince, fmt.Errorf("%w: %w", ErrInvalid, err))
	}
	by := q.Get("by")
	switch by {
	case "", process.BySite, process.ByRule, process.ByDay:
	default:
		return nil, rejected(reasonBadBy, fmt.Errorf("%w: by %q: want site, rule or day", ErrInvalid, clipParam(by)))
	}
	return svc.ProcessSummary(c.r.Context(), since, by)
}

// clipParam shortens a hostile query value for an error message.
func clipParam(v string) string {
	if len(v) > 32 {
		return v[:32] + "…"
	}
	return v
}

// getProcessChart draws one chart of the incidents of the last since
// (default 7d), as SVG: the cumulative distribution of a stage's
// durations (stage=detect, share, ...), or the breaches per day
// (chart=breaches).
func getProcessChart(s *Server, c *call) (any, error) {
	q := c.r.URL.Query()
	since, err := ParseSince(q.Get("since"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	chart, stage := q.Get("chart"), process.Stage(q.Get("stage"))
	switch chart {
	case "", "cdf":
		if !stage.Valid() {
			return nil, fmt.Errorf("%w: stage %q: want one of %v", ErrInvalid, stage, process.AllStages)
		}
	case "breaches":
		if stage != "" {
			return nil, fmt.Errorf("%w: stage %q: the breaches chart takes none", ErrInvalid, stage)
		}
	default:
		return nil, fmt.Errorf("%w: chart %q: want cdf or breaches", ErrInvalid, chart)
	}
	svc, err := s.processSvc()
	if err != nil {
		return nil, err
	}
	sum, err := svc.ProcessSummary(c.r.Context(), since, "")
	if err != nil {
		return nil, err
	}
	var svg []byte
	if chart == "breaches" {
		svg, err = report.BreachesChart(sum)
	} else {
		svg, err = report.StageChart(sum, stage)
	}
	if errors.Is(err, report.ErrNoData) {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("process chart: %w", err)
	}
	return rawBody{contentType: "image/svg+xml", b: svg}, nil
}

// getProcessBreaches lists the playbook's breaches.
func getProcessBreaches(s *Server, c *call) (any, error) {
	svc, err := s.processSvc()
	if err != nil {
		return nil, err
	}
	bs, err := svc.ProcessBreaches(c.r.Context())
	if err != nil {
		return nil, err
	}
	return nonNil(bs), nil
}

// getProcessExport answers what the node recorded of the process.
func getProcessExport(s *Server, c *call) (any, error) {
	svc, err := s.processSvc()
	if err != nil {
		return nil, err
	}
	return svc.ProcessExport(c.r.Context())
}

// ProcessEventResult is the answer to POST /v1/process-events.
type ProcessEventResult struct {
	Event     process.Stored `json:"event"`
	Duplicate bool           `json:"duplicate"`
}

// postProcessEvent takes in an outside event (a ticket opened or closed,
// a chat message) and links the indicators it names.
func postProcessEvent(s *Server, c *call) (any, error) {
	svc, err := s.processSvc()
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(c.r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(mbe.Limit)
		}
		return nil, fmt.Errorf("%w: read body: %v", ErrInvalid, err)
	}
	ev, added, err := svc.ProcessEvent(c.r.Context(), body)
	if err != nil {
		var rj *process.Rejection
		if errors.As(err, &rj) {
			if rj.Reason == process.ReasonConflict {
				return nil, fmt.Errorf("%w: %w", ErrRefused, err)
			}
			if rj.Reason == process.ReasonTooLarge {
				return nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return nil, err
	}
	c.target = ev.Source + "/" + ev.ExternalID
	c.detail = fmt.Sprintf("kind=%s linked=%d duplicate=%t", ev.Kind, len(ev.Linked), !added)
	return ProcessEventResult{Event: ev, Duplicate: !added}, nil
}

// ProcessSummary is GET /v1/process.
func (c *Client) ProcessSummary(ctx context.Context, since, by string) (process.Summary, error) {
	var out process.Summary
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if by != "" {
		q.Set("by", by)
	}
	return out, c.do(ctx, "GET", "/v1/process", q, nil, &out)
}

// ProcessBreaches is GET /v1/process/breaches.
func (c *Client) ProcessBreaches(ctx context.Context) ([]process.Breach, error) {
	var out []process.Breach
	return out, c.do(ctx, "GET", "/v1/process/breaches", nil, nil, &out)
}

// ProcessExport is GET /v1/process/export.
func (c *Client) ProcessExport(ctx context.Context) (process.Export, error) {
	var out process.Export
	return out, c.do(ctx, "GET", "/v1/process/export", nil, nil, &out)
}

// PostProcessEvent is POST /v1/process-events.
func (c *Client) PostProcessEvent(ctx context.Context, ev process.Event) (ProcessEventResult, error) {
	var out ProcessEventResult
	return out, c.do(ctx, "POST", "/v1/process-events", nil, ev, &out)
}
