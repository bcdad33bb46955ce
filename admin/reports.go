package admin

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// Limits on the reports list.
const (
	defaultReportLimit = 100
	maxReportLimit     = 1000
	// reportScan is how many of the most recent reports a filtered list
	// and an indicator's detail are computed from: each one read costs an
	// envelope read and a signature check.
	reportScan = maxReportLimit
)

// sites maps member node IDs to their sites; a roster that cannot be read
// leaves the sites out rather than failing the request.
func (s *Server) sites(c *call) map[string]string {
	ms, err := s.memberSvc.Members(c.r.Context())
	if err != nil {
		s.log.Debug("admin API: roster unavailable for report sites", "err", err)
		return nil
	}
	out := make(map[string]string, len(ms))
	for _, m := range ms {
		if m.Site != "" {
			out[m.ID] = m.Site
		}
	}
	return out
}

// newReport builds and validates the report a request asks for; every
// error wraps ErrInvalid and names the field.
func (s *Server) newReport(c *call, req ReportRequest) (intel.IndicatorReport, error) {
	ind, err := parseIndicator(req.Indicator, req.Type)
	if err != nil {
		return intel.IndicatorReport{}, fmt.Errorf("indicator %q: %w", req.Indicator, err)
	}
	c.target = ind.Key()
	var validFor time.Duration
	if req.ValidFor != "" {
		validFor, err = time.ParseDuration(req.ValidFor)
		if err != nil || validFor < 0 {
			return intel.IndicatorReport{}, fmt.Errorf("%w: valid_for %q: want a non-negative duration such as 24h or 720h", ErrInvalid, req.ValidFor)
		}
	}
	c.detail = fmt.Sprintf("confidence=%d labels=%s technique=%q valid_for=%s", req.Confidence,
		strings.Join(req.Labels, ","), req.Technique, validFor)
	now := s.now().UTC()
	r := intel.IndicatorReport{
		Indicator:   ind,
		Source:      "operator:" + c.who.name,
		Confidence:  req.Confidence,
		Labels:      req.Labels,
		Technique:   req.Technique,
		Description: req.Description,
		ValidFrom:   now,
	}
	if validFor > 0 {
		r.ValidUntil = now.Add(validFor)
	}
	if err := r.Validate(); err != nil {
		return intel.IndicatorReport{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return r, nil
}

// postReport publishes an operator's indicator report mesh-wide.
func postReport(s *Server, c *call) (any, error) {
	var req ReportRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	r, err := s.newReport(c, req)
	if err != nil {
		return nil, err
	}
	seq, err := s.reportSvc.PublishReport(c.r.Context(), r)
	if err != nil {
		return nil, fmt.Errorf("publish report of %s: %w", r.Indicator.Value, err)
	}
	self := s.statusSvc.ID()
	c.target = fmt.Sprintf("%s seq %d", r.Indicator.Key(), seq)
	rec := store.ReportRecord{Origin: self, Seq: seq, Report: r, Received: r.ValidFrom, Sent: r.ValidFrom}
	return reportFrom(rec, s.sites(c), s.now()), nil
}

// getReports lists the indicator reports this node holds, newest first;
// the active query parameter (true or false) keeps only those that are,
// or are not, valid now, among the reportScan most recent.
func getReports(s *Server, c *call) (any, error) {
	n, err := limitParam(c, defaultReportLimit, maxReportLimit)
	if err != nil {
		return nil, err
	}
	want, err := boolParam(c, "active")
	if err != nil {
		return nil, err
	}
	scan := n
	if want != nil {
		scan = reportScan
	}
	recs, err := s.reportSvc.Reports(c.r.Context(), scan)
	if err != nil {
		return nil, fmt.Errorf("reports: %w", err)
	}
	now, sites := s.now(), s.sites(c)
	out := make([]Report, 0, min(n, len(recs)))
	for _, r := range recs {
		if len(out) >= n {
			break
		}
		rep := reportFrom(r, sites, now)
		if want != nil && rep.Active != *want {
			continue
		}
		out = append(out, rep)
	}
	return out, nil
}

// reportsOf returns the reports of exactly ind among the reportScan most
// recent, newest first.
func (s *Server) reportsOf(c *call, ind intel.Indicator) ([]Report, error) {
	recs, err := s.reportSvc.Reports(c.r.Context(), reportScan)
	if err != nil {
		return nil, fmt.Errorf("reports: %w", err)
	}
	out := []Report{}
	var sites map[string]string
	for _, r := range recs {
		if r.Report.Indicator != ind {
			continue
		}
		if sites == nil {
			sites = s.sites(c)
		}
		out = append(out, reportFrom(r, sites, s.now()))
	}
	return out, nil
}
