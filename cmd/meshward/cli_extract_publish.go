package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/extract"
	"github.com/meshward/meshward/intel/warninglist"
)

// publishOptions are the flags of `intel extract --publish`.
type publishOptions struct {
	publish    bool
	source     string
	confidence int
	ttl        time.Duration
	conn       clientFlags
}

// maxAdvisoryBytes bounds an advisory read for --publish: it is read
// whole before anything is published.
const maxAdvisoryBytes = 16 << 20

// extractResult is what --publish did with one finding.
type extractResult struct {
	extract.Finding
	// Result: published, flagged (a private, reserved or documentation
	// range, a file-name-like domain), warninglisted, duplicate, or not an
	// indicator (e-mail, CVE, technique).
	Result string `json:"result"`
	// Reason names the flag or the warninglist entry.
	Reason string `json:"reason,omitempty"`
}

// runExtractPublish extracts the indicators of an advisory and publishes
// those that may be as signed indicator reports with the advisory as
// provenance. The whole advisory is read and checked first; nothing is
// published when it cannot be.
func runExtractPublish(cmd *cobra.Command, in io.Reader, name, output string, o *publishOptions) error {
	if o.confidence < 0 || o.confidence > 100 {
		return fmt.Errorf("--confidence %d: want 0 to 100", o.confidence)
	}
	if o.ttl <= 0 {
		return fmt.Errorf("--ttl %s: want a positive duration", o.ttl)
	}
	source := o.source
	if source == "" {
		source = "advisory:" + filepath.Base(name)
		for len(source) > intel.MaxReportSource || !utf8.ValidString(source) {
			source = source[:len(source)-1]
		}
	}
	o.conn.output = output
	c, err := o.conn.client()
	if err != nil {
		return err
	}
	defer c.Close()
	// The warninglist in force: the built-in one and the operators'.
	lists := []*warninglist.List{warninglist.Builtin()}
	st, err := c.Operator(cmd.Context())
	if err != nil {
		return apiErr(err)
	}
	if len(st.Warninglist) > 0 {
		l, err := warninglist.New(st.Warninglist)
		if err != nil {
			return fmt.Errorf("the node's warninglist: %w", err)
		}
		lists = append(lists, l)
	}

	data, err := io.ReadAll(io.LimitReader(in, maxAdvisoryBytes+1))
	if err != nil {
		return fmt.Errorf("intel extract %s: %w", name, err)
	}
	if len(data) > maxAdvisoryBytes {
		return fmt.Errorf("intel extract %s: over %d bytes; nothing published", name, maxAdvisoryBytes)
	}
	now := time.Now().UTC()
	var results []extractResult
	var reports []intel.IndicatorReport
	seen := make(map[string]bool)
	var cves []string
	var e extract.Extractor
	err = e.Scan(bytes.NewReader(data), func(f extract.Finding) error {
		r := extractResult{Finding: f}
		if f.Type == extract.CVE && len(cves) < 16 && !slices.Contains(cves, f.Value) {
			cves = append(cves, f.Value)
		}
		ind, ok := f.Indicator()
		switch {
		case !ok:
			r.Result = "not an indicator"
		case f.Flag != "":
			r.Result, r.Reason = "flagged", f.Flag
		case seen[ind.Key()]:
			r.Result = "duplicate"
		default:
			if entry, hit := warninglist.Check(ind, lists...); hit {
				r.Result, r.Reason = "warninglisted", entry.String()
				break
			}
			seen[ind.Key()] = true
			r.Result = "published"
			reports = append(reports, intel.IndicatorReport{
				Indicator: ind, Source: source, Confidence: o.confidence, Labels: []string{"advisory"},
				Description: fmt.Sprintf("extracted from %s, line %d", filepath.Base(name), f.Line),
				ValidFrom:   now, ValidUntil: now.Add(o.ttl),
			})
		}
		results = append(results, r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("intel extract %s: %w", name, err)
	}
	// The CVEs the advisory names go with every report, so that the
	// mesh's risk scores weigh them (KEV, CVSS).
	if len(cves) > 0 {
		for i := range reports {
			reports[i].Description += "; the advisory names " + strings.Join(cves, ", ")
		}
	}
	for i, r := range reports {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("intel extract %s: report %d (%s): %w; nothing published", name, i, r.Indicator, err)
		}
	}
	published := 0
	for len(reports) > 0 {
		n := min(len(reports), admin.MaxImportBatch)
		res, err := c.Import(cmd.Context(), reports[:n])
		if err != nil {
			return fmt.Errorf("intel extract %s: published %d of %d reports, then: %w", name, published, published+len(reports), apiErr(err))
		}
		published += res.Published
		reports = reports[n:]
	}
	out := cmd.OutOrStdout()
	if output == "json" {
		enc := json.NewEncoder(out)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "LINE\tTYPE\tVALUE\tRESULT")
	for _, r := range results {
		res := r.Result
		if r.Reason != "" {
			res += ": " + r.Reason
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Line, r.Type, truncate(r.Value, 80), res)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%d reports published with source %q\n", published, source)
	return nil
}
