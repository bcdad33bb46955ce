package admin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/meshward/meshward/alert"
)

// AlertService is the node's alerting: the alerts firing and the recent
// ones, and silences. A Node that does not implement it answers the alert
// routes with 503.
type AlertService interface {
	// Alerts lists the alerts firing (most recently updated first) and the
	// recent resolved or evicted ones (newest first).
	Alerts(ctx context.Context) (AlertList, error)
	// SilenceAlert stops the notifications of alert id until the given
	// time (zero lifts the silence); an alert not held wraps ErrNotFound.
	SilenceAlert(ctx context.Context, id string, until time.Time) (alert.Alert, error)
}

// AlertList is GET /v1/alerts.
type AlertList struct {
	Active []alert.Alert `json:"active"`
	Recent []alert.Alert `json:"recent"`
}

// SilenceRequest is the body of POST /v1/alerts/{id}/silence: how long
// to silence the alert ("2h"); "0s" lifts a silence.
type SilenceRequest struct {
	Duration string `json:"duration"`
}

// MaxSilence is the longest silence the API sets.
const MaxSilence = 30 * 24 * time.Hour

var alertIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

func (s *Server) alertSvc() (AlertService, error) {
	as, ok := s.statusSvc.(AlertService)
	if !ok {
		return nil, fmt.Errorf("%w: this node has no alerting", ErrUnavailable)
	}
	return as, nil
}

func getAlerts(s *Server, c *call) (any, error) {
	as, err := s.alertSvc()
	if err != nil {
		return nil, err
	}
	l, err := as.Alerts(c.r.Context())
	if err != nil {
		return nil, err
	}
	if l.Active == nil {
		l.Active = []alert.Alert{}
	}
	if l.Recent == nil {
		l.Recent = []alert.Alert{}
	}
	return l, nil
}

func postAlertSilence(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	if !alertIDRE.MatchString(id) {
		return nil, fmt.Errorf("%w: alert id %q: want 16 lower-case hex digits", ErrInvalid, id)
	}
	var req SilenceRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil || d < 0 || d > MaxSilence {
		return nil, fmt.Errorf("%w: duration %q: want a duration from 0s (lift) to %s", ErrInvalid, req.Duration, MaxSilence)
	}
	as, err := s.alertSvc()
	if err != nil {
		return nil, err
	}
	var until time.Time
	if d > 0 {
		until = s.now().Add(d).UTC()
	}
	c.detail = "duration=" + d.String()
	a, err := as.SilenceAlert(c.r.Context(), id, until)
	if errors.Is(err, alert.ErrNotFound) {
		return nil, fmt.Errorf("%w: alert %s", ErrNotFound, id)
	}
	return a, err
}

// Alerts lists the node's alerts.
func (c *Client) Alerts(ctx context.Context) (AlertList, error) {
	var out AlertList
	return out, c.do(ctx, "GET", "/v1/alerts", nil, nil, &out)
}

// SilenceAlert silences alert id for d (0 lifts the silence).
func (c *Client) SilenceAlert(ctx context.Context, id string, d time.Duration) (alert.Alert, error) {
	var out alert.Alert
	return out, c.do(ctx, "POST", "/v1/alerts/"+url.PathEscape(id)+"/silence", nil, SilenceRequest{Duration: d.String()}, &out)
}
