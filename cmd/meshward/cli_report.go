package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/internal/atomicfile"
	"github.com/meshward/meshward/process"
	"github.com/meshward/meshward/process/report"
)

// newReportCmd is `meshward report`: the process report of one node, or
// of several merged.
func newReportCmd() *cobra.Command {
	var (
		f      clientFlags
		since  string
		format string
		out    string
		merge  []string
	)
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Render the process report: time to detect, share, decide, enforce, triage and remediate, with charts",
		Long: `Render how well the security process ran over a period: per stage the count
and p50/p90/p99 of the incidents' durations, by site, rule and day, the
playbook's breaches, and SVG charts (a CDF per stage, breaches per day).

Each node records its own receipt and enforcement times. The report merges
the exports of --node and every --merge node: "every node" is every node
merged, so point it at all the mesh's nodes for mesh-wide share and enforce
times; a single node's report says "until this node held and enforced it".

HTML carries its charts inline. Markdown written with -o FILE references
FILE's name with -<chart>.svg appended, written beside it; Markdown on
standard output carries them as data URIs.`,
		Example: `  meshward report --since 7d --format html -o process.html
  meshward report --since 30d --format md -o process.md --merge /var/lib/meshward-b/admin.sock
  meshward report --since 36h --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			period, err := admin.ParseSince(since)
			if err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			switch format {
			case report.FormatHTML, report.FormatMD, report.FormatJSON:
			default:
				return fmt.Errorf("--format %q: want html, md or json", format)
			}
			targets := append([]string{f.node}, merge...)
			var exports []process.Export
			for _, target := range targets {
				ex, err := fetchExport(cmd.Context(), f, target)
				if err != nil {
					return fmt.Errorf("node %s: %w", target, err)
				}
				exports = append(exports, ex)
			}
			until := exports[0].Generated
			for _, ex := range exports {
				if ex.Generated.After(until) {
					until = ex.Generated
				}
			}
			rep := process.BuildReport(exports, until.Add(-period), until)
			base := ""
			if out != "" {
				base = strings.TrimSuffix(filepath.Base(out), filepath.Ext(out))
			}
			doc, files, err := report.Render(rep, format, base)
			if err != nil {
				return err
			}
			if out == "" {
				_, err := cmd.OutOrStdout().Write(doc)
				return err
			}
			dir := filepath.Dir(out)
			for name, b := range files {
				if err := atomicfile.Write(filepath.Join(dir, name), b, 0o644); err != nil {
					return fmt.Errorf("write chart: %w", err)
				}
			}
			if err := atomicfile.Write(out, doc, 0o644); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%d incidents, %d charts beside it)\n", out, rep.Summary.Incidents, len(files))
			return nil
		},
	}
	f.registerConn(cmd)
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "7d", "the period: a duration (36h) or days (7d), at most 400d")
	fl.StringVar(&format, "format", report.FormatHTML, "html, md or json")
	fl.StringVarP(&out, "output", "o", "", "file to write (default: standard output)")
	fl.StringArrayVar(&merge, "merge", nil, "another node's admin API whose records are merged (repeatable; a Unix socket uses the token beside it, https the same token)")
	return cmd
}

// fetchExport reads one node's process export.
func fetchExport(ctx context.Context, f clientFlags, target string) (process.Export, error) {
	f.node = target
	tok, err := f.token()
	if err != nil {
		return process.Export{}, err
	}
	c, err := admin.NewClient(target, tok, admin.ClientOptions{CAFile: f.caFile, Timeout: f.timeout})
	if err != nil {
		return process.Export{}, err
	}
	defer c.Close()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, max(f.timeout, time.Second))
	defer cancel()
	ex, err := c.ProcessExport(ctx)
	if err != nil {
		return process.Export{}, apiErr(err)
	}
	return ex, nil
}
