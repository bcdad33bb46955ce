package admin

// GET /v1/export/stix: the node's indicator reports, sightings and
// mesh-wide policies as one STIX 2.1 bundle, written as it is made.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/meshward/meshward/intel/stix"
)

// getExportSTIX streams the bundle; the tlp query parameter marks every
// object (clear, green, amber, amber+strict or red; none when absent).
func getExportSTIX(s *Server, c *call) (any, error) {
	tlp := c.r.URL.Query().Get("tlp")
	m, err := stix.NewMapper(tlp)
	if err != nil {
		return nil, fmt.Errorf("%w: tlp: %v", ErrInvalid, err)
	}
	c.target = "stix tlp=" + tlp
	return streamBody{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", STIXMediaType)
		w.Header().Set("Cache-Control", "no-store")
		if err := s.exportSTIX(r.Context(), w, m); err != nil {
			// The bundle is left unterminated: the client sees broken
			// JSON, never a bundle that looks whole.
			s.log.Error("STIX export failed", "err", err)
			panic(http.ErrAbortHandler)
		}
	})}, nil
}

// exportSTIX writes the bundle of every collection to w.
func (s *Server) exportSTIX(ctx context.Context, w io.Writer, m *stix.Mapper) error {
	bw, err := stix.NewBundleWriter(w, m)
	if err != nil {
		return err
	}
	for _, col := range []string{colIndicators, colSightings, colPolicies} {
		err := s.stixRecords(ctx, col, m, func(rec stixRecord) (bool, error) {
			return true, bw.Write(s.objects(rec)...)
		})
		if err != nil {
			return fmt.Errorf("export %s: %w", col, err)
		}
	}
	return bw.Close()
}

// ExportSTIX writes the node's STIX 2.1 bundle to w (tlp "" for no
// marking) and returns the bytes written.
func (c *Client) ExportSTIX(ctx context.Context, tlp string, w io.Writer) (int64, error) {
	u := c.base + "/v1/export/stix"
	if tlp != "" {
		u += "?tlp=" + url.QueryEscape(tlp)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", STIXMediaType)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach node at %s: %w", c.target, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var raw []byte
		raw, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return 0, apiError(resp.StatusCode, raw)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("read STIX export from %s: %w", c.target, err)
	}
	return n, nil
}

// apiError is the APIError of an error answer.
func apiError(status int, b []byte) error {
	var eb errorBody
	if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
		eb = errorBody{Error: strings.TrimSpace(string(b)), Code: http.StatusText(status)}
	}
	return &APIError{Status: status, Code: eb.Code, Message: eb.Error}
}
