// Threat feeds from the operator's side: `meshward intel feeds` manages
// the feeds a node runs, `meshward intel import` publishes a file once,
// `meshward intel export --format misp|csv|plain` writes the reports a
// node holds as a feed (withFeedExport).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/feeds"
)

// importBatch is how many reports one import request carries (the API
// takes up to admin.MaxImportBatch in a body of 64 KiB).
const importBatch = 100

func newIntelFeedCmds() []*cobra.Command {
	return []*cobra.Command{newIntelFeedsCmd(), newIntelImportCmd()}
}

func newIntelFeedsCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := nounCmd(&cobra.Command{
		Use:   "feeds",
		Short: "List, add, remove and sync the threat feeds a node runs",
		Long: `A feed is fetched on schedule by one server of the mesh (rendezvous hashing
of its name over the voters: the FETCHER column) and published as signed
indicator reports whose source is the feed's name. Feeds never block
anything by themselves. Feeds come from intel.feeds in the node's
configuration file, or are added at runtime with "feeds add" (admin; kept in
the node's data directory).`,
		Example: "  meshward intel feeds list\n  meshward intel feeds add abuse-ips --url https://feeds.example/ips.txt\n  meshward intel feeds sync abuse-ips",
	}, f)

	list := &cobra.Command{
		Use:     "list",
		Short:   "List the feeds with their last poll (viewer)",
		Example: "  meshward intel feeds list\n  meshward intel feeds list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, f, func(c *admin.Client) ([]admin.Feed, error) { return c.Feeds(cmd.Context()) }, printFeeds)
		},
	}

	var add feeds.Config
	var enabled bool
	addCmd := &cobra.Command{
		Use:   "add NAME (--url URL | --path PATH)",
		Short: "Add or replace a runtime feed (admin)",
		Example: `  meshward intel feeds add abuse-ips --url https://feeds.example/ips.txt --interval 1h --confidence 70 --ttl 48h
  meshward intel feeds add c2-csv --path /srv/feeds/c2.csv --format csv --csv-column-name dst_ip
  meshward intel feeds add circl --url https://feeds.example/misp/ --format misp --tlp amber
  meshward intel feeds add partner --url https://taxii.example/api1/collections/91a7b528-80eb-42ed-a74d-c6fbd5a26116/ \
      --format taxii --feed-token-file /etc/meshward/partner.token`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := add
			c.Name = args[0]
			if !enabled {
				c.Enabled = &enabled
			}
			if err := c.Validate(); err != nil {
				return fmt.Errorf("feed %s: %w", c.Name, err)
			}
			return run(cmd, f, func(cl *admin.Client) ([]admin.Feed, error) {
				fd, err := cl.AddFeed(cmd.Context(), c)
				return []admin.Feed{fd}, err
			}, printFeeds)
		},
	}
	af := addCmd.Flags()
	af.StringVar(&add.URL, "url", "", "https:// URL of the feed")
	af.StringVar(&add.Path, "path", "", "local file of the feed (a directory for misp)")
	af.StringVar(&add.Format, "format", feeds.FormatPlain, "format: "+strings.Join(feeds.Formats, ", "))
	af.DurationVar(&add.Interval, "interval", feeds.DefaultInterval, "time between fetches")
	af.IntVar(&add.Confidence, "confidence", feeds.DefaultConfidence, "confidence (0-100) of entries that give none")
	af.DurationVar(&add.TTL, "ttl", feeds.DefaultTTL, "how long each report stays valid")
	af.StringVar(&add.TLP, "tlp", "", "TLP of entries that have none: clear, green, amber, amber+strict, red")
	af.StringSliceVar(&add.Labels, "label", nil, "label put on every report (repeatable)")
	af.BoolVar(&add.Strict, "strict", false, "fail the whole fetch on an invalid value instead of skipping it")
	af.BoolVar(&enabled, "enabled", true, "fetch the feed on schedule")
	csvFlags(af, &add.CSV)
	af.StringVar(&add.JSONL.Field, "jsonl-field", "", "jsonl: the field (or dotted path) holding the value")
	af.StringVar(&add.TokenFile, "feed-token-file", "", "taxii: file on the node holding the collection's token")
	af.StringVar(&add.Username, "feed-username", "", "taxii: send the token as the Basic password of this user")

	remove := &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove a runtime feed (admin)",
		Example: "  meshward intel feeds remove abuse-ips",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, f, func(c *admin.Client) (string, error) { return args[0], c.RemoveFeed(cmd.Context(), args[0]) },
				func(w io.Writer, name string) { fmt.Fprintf(w, "removed feed %s\n", name) })
		},
	}

	syncCmd := &cobra.Command{
		Use:     "sync NAME",
		Short:   "Fetch a feed now on this node and publish what changed (admin)",
		Example: "  meshward intel feeds sync abuse-ips",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, f, func(c *admin.Client) (feeds.PollResult, error) { return c.SyncFeed(cmd.Context(), args[0]) }, printPoll)
		},
	}
	cmd.AddCommand(list, addCmd, remove, syncCmd)
	return cmd
}

type flagSet interface {
	IntVar(p *int, name string, value int, usage string)
	StringVar(p *string, name string, value string, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
}

func csvFlags(fs flagSet, c *feeds.CSVOptions) {
	fs.IntVar(&c.Column, "csv-column", 0, "csv: 0-based index of the value's column")
	fs.StringVar(&c.ColumnName, "csv-column-name", "", "csv: header name of the value's column")
	fs.StringVar(&c.Delimiter, "csv-delimiter", "", "csv: field delimiter (default ,)")
	fs.BoolVar(&c.Header, "csv-header", false, "csv: the first record is a header")
}

func printFeeds(w io.Writer, fs []admin.Feed) {
	fmt.Fprintln(w, "NAME\tFORMAT\tSOURCE\tORIGIN\tFETCHER\tHERE\tLAST POLL\tRESULT\tENTRIES\tPUBLISHED\tSKIPPED\tDEFERRED")
	for _, f := range fs {
		skipped := 0
		for _, n := range f.Last.Skipped {
			skipped += n
		}
		last := "-"
		if !f.LastPoll.IsZero() {
			last = timeCell(f.LastPoll)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", f.Config.Name, f.Config.Format,
			truncate(f.Config.Source(), 48), f.Origin, orDash(short(f.Fetcher)), yesNo(f.Assigned), last,
			orDash(f.Last.Result), f.Last.Entries, f.Last.Published, skipped, f.Last.Deferred)
	}
}

func printPoll(w io.Writer, r feeds.PollResult) {
	fmt.Fprintf(w, "Result:\t%s\n", r.Result)
	if r.Error != "" {
		fmt.Fprintf(w, "Error:\t%s\n", r.Error)
	}
	fmt.Fprintf(w, "Entries:\t%d\n", r.Entries)
	fmt.Fprintf(w, "Published:\t%d\n", r.Published)
	fmt.Fprintf(w, "Unchanged:\t%d\n", r.Unchanged)
	fmt.Fprintf(w, "Deferred:\t%d\n", r.Deferred)
	fmt.Fprintf(w, "Skipped:\t%s\n", skippedCell(r.Skipped))
	for _, s := range r.Samples {
		fmt.Fprintf(w, "  %s\n", s)
	}
}

func skippedCell(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func newIntelImportCmd() *cobra.Command {
	f := &clientFlags{}
	var (
		format, source, tlp string
		confidence          int
		ttl                 time.Duration
		strict, dryRun      bool
		csvOpts             feeds.CSVOptions
		jsonlField          string
	)
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Publish the indicators of a feed file once, as reports (admin)",
		Long: `Import reads FILE whole first: every entry is parsed and its report
checked, and on any error nothing is published. Only then are the reports
sent to the node, in batches, to be signed and gossiped mesh-wide with
--source as their source. Invalid values are skipped and counted, or fail the
import with --strict. For misp, FILE is a feed directory (manifest.json and
one file per event) or one event file. Reports never block by themselves.`,
		Example: `  meshward intel import blocklist.txt --source abuse-list --confidence 70 --ttl 72h
  meshward intel import export.csv --format csv --csv-column-name indicator --source partner
  meshward intel import ./misp-feed --format misp --source circl --tlp amber --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := feeds.Config{Name: source, Path: args[0], Format: format, CSV: csvOpts, JSONL: feeds.JSONLOptions{Field: jsonlField},
				Confidence: confidence, TTL: ttl, TLP: tlp, Strict: strict}
			if format == feeds.FormatTAXII {
				return errors.New("intel import: taxii is a feed served over the network: add it with \"meshward intel feeds add\"")
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("intel import: %s", strings.NewReplacer("name:", "--source:", "path:", "FILE:").Replace(err.Error()))
			}
			return importFile(cmd, f, cfg, dryRun)
		},
	}
	f.registerConn(cmd)
	fl := cmd.Flags()
	fl.StringVar(&format, "format", feeds.FormatPlain, "format: plain, csv, jsonl, misp, stix")
	fl.StringVar(&source, "source", "import", "source of the reports (a feed name: a-z, 0-9, '.', '_', '-')")
	fl.IntVar(&confidence, "confidence", feeds.DefaultConfidence, "confidence (0-100) of entries that give none")
	fl.DurationVar(&ttl, "ttl", feeds.DefaultTTL, "how long each report stays valid")
	fl.StringVar(&tlp, "tlp", "", "TLP of entries that have none")
	fl.BoolVar(&strict, "strict", false, "fail on the first invalid value instead of skipping it")
	fl.BoolVar(&dryRun, "dry-run", false, "read and check everything, publish nothing")
	csvFlags(fl, &csvOpts)
	fl.StringVar(&jsonlField, "jsonl-field", "", "jsonl: the field (or dotted path) holding the value")
	return cmd
}

// importFile checks the whole file, then publishes it in batches.
func importFile(cmd *cobra.Command, f *clientFlags, cfg feeds.Config, dryRun bool) error {
	cfg = cfg.WithDefaults()
	parse, err := feeds.Parser(cfg, cfg.Path, feeds.Options{File: cfg.Path, Feed: cfg.Name, Strict: cfg.Strict})
	if err != nil {
		return fmt.Errorf("intel import: %w", err)
	}
	now := time.Now()
	report := func(e feeds.Entry) (intel.IndicatorReport, error) {
		r := e.Report(cfg.Name, cfg.Confidence, cfg.TTL, now)
		if e.TLP == "" && cfg.TLP != "" {
			t, _ := feeds.ParseTLP(cfg.TLP)
			r.Labels = append([]string{"tlp:" + t}, r.Labels...)
			if len(r.Labels) > intel.MaxReportLabels {
				r.Labels = r.Labels[:intel.MaxReportLabels]
			}
		}
		if err := r.Validate(); err != nil {
			return r, fmt.Errorf("%s: %w", e.Indicator.Value, err)
		}
		return r, nil
	}
	// First pass: everything parses and every report is valid.
	st, err := parse(func(e feeds.Entry) error {
		_, err := report(e)
		return err
	})
	out := cmd.OutOrStdout()
	if err != nil {
		return fmt.Errorf("intel import: nothing published: %w", err)
	}
	fmt.Fprintf(out, "read %s: %d entries, %d skipped (%s)\n", cfg.Path, st.Entries, st.SkippedTotal(), skippedCell(st.Skipped))
	for _, s := range st.Samples {
		fmt.Fprintf(out, "  skipped %s\n", s)
	}
	if dryRun || st.Entries == 0 {
		fmt.Fprintln(out, "published 0 reports")
		return nil
	}
	f.output = "table" // what is printed is the counts
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	published := 0
	batch := make([]intel.IndicatorReport, 0, importBatch)
	flush := func(ctx context.Context) error {
		if len(batch) == 0 {
			return nil
		}
		res, err := c.Import(ctx, batch)
		published += res.Published
		batch = batch[:0]
		if err != nil {
			return apiErr(err)
		}
		return nil
	}
	ctx := cmd.Context()
	_, err = parse(func(e feeds.Entry) error {
		r, err := report(e)
		if err != nil {
			return err
		}
		batch = append(batch, r)
		if len(batch) == importBatch {
			return flush(ctx)
		}
		return nil
	})
	if err == nil {
		err = flush(ctx)
	}
	if err != nil {
		return fmt.Errorf("intel import: published %d of %d reports, then: %w", published, st.Entries, err)
	}
	fmt.Fprintf(out, "published %d reports with source %s\n", published, cfg.Name)
	return nil
}

// feedExportFormats are the formats withFeedExport serves.
var feedExportFormats = []string{feeds.FormatMISP, feeds.FormatCSV, feeds.FormatPlain}

// withFeedExport teaches an `intel export` command the feed formats: with
// --format misp, csv or plain it writes the reports the node holds with
// the feed exporters (misp: a feed directory, -o DIR); any other format
// goes to the command's own RunE. The flags it needs (--format, -o, the
// connection flags) are added when the command lacks them.
func withFeedExport(cmd *cobra.Command) *cobra.Command {
	fl := cmd.Flags()
	var f *clientFlags
	if fl.Lookup("node") == nil && cmd.PersistentFlags().Lookup("node") == nil {
		f = &clientFlags{}
		f.registerConn(cmd)
	}
	if fl.Lookup("format") == nil {
		fl.String("format", "", "export format")
	}
	outName := "output"
	if sf := fl.ShorthandLookup("o"); sf != nil {
		outName = sf.Name // the command's own -o
	} else if fl.Lookup(outName) == nil {
		fl.StringP(outName, "o", "", "where to write")
	}
	if ff := fl.Lookup("format"); ff != nil {
		ff.Usage += ", " + strings.Join(feedExportFormats, ", ")
	}
	if of := fl.Lookup(outName); of != nil {
		of.Usage += " (misp: the feed directory, required)"
	}
	cmd.Short = strings.TrimSuffix(cmd.Short, ")") + "; MISP feed, CSV, plain list)"
	var source string
	var limit int
	var all bool
	fl.StringVar(&source, "source", "", "misp, csv, plain: only the reports of this source")
	fl.IntVar(&limit, "limit", 10000, "misp, csv, plain: the most recent reports to ask for (at most 100000)")
	fl.BoolVar(&all, "all", false, "misp, csv, plain: include reports that are no longer valid")
	cmd.Long += `

With --format misp, csv or plain it writes the indicator reports the node
holds (the --limit most recent; only those valid now unless --all; --source
keeps one source's): misp as a MISP feed directory (-o DIR, required:
manifest.json and one event whose attributes carry the TLP and labels as
tags), csv (type, value, feed, confidence, tlp, times, technique, cves,
labels) and plain (one value a line) to -o FILE or standard output.`
	cmd.Example += `
  meshward intel export --format misp -o ./meshward-feed
  meshward intel export --format csv --source abuse-list -o reports.csv
  meshward intel export --format plain > blocklist.txt`
	orig := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		format, _ := cmd.Flags().GetString("format")
		if !slices.Contains(feedExportFormats, format) {
			if orig == nil {
				return fmt.Errorf("intel export: --format %q: want %s", format, strings.Join(feedExportFormats, ", "))
			}
			return orig(cmd, args)
		}
		cf := f
		if cf == nil {
			cf = &clientFlags{}
			cf.node, _ = cmd.Flags().GetString("node")
			cf.tokenFile, _ = cmd.Flags().GetString("token-file")
			cf.caFile, _ = cmd.Flags().GetString("ca-cert")
			cf.timeout, _ = cmd.Flags().GetDuration("timeout")
		}
		cf.output = "table"
		output, _ := cmd.Flags().GetString(outName)
		return feedExport(cmd, cf, format, output, source, limit, all)
	}
	return cmd
}

// feedExport writes the node's reports in a feed format.
func feedExport(cmd *cobra.Command, f *clientFlags, format, output, source string, limit int, all bool) error {
	if format == feeds.FormatMISP && (output == "" || output == "-") {
		return errors.New("intel export: --format misp writes a feed directory: give -o DIR")
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	var active *bool
	if !all {
		yes := true
		active = &yes
	}
	reps, err := c.IntelReports(cmd.Context(), limit, active)
	if err != nil {
		return apiErr(err)
	}
	var ex feeds.Exporter
	var file *os.File
	switch format {
	case feeds.FormatMISP:
		ex, err = feeds.NewMISPExporter(output, "Meshward indicator reports", time.Now())
		if err != nil {
			return err
		}
	default:
		w := cmd.OutOrStdout()
		if output != "" && output != "-" {
			if file, err = os.Create(output); err != nil {
				return fmt.Errorf("intel export: %w", err)
			}
			defer file.Close()
			w = file
		}
		if format == feeds.FormatCSV {
			ex = feeds.NewCSVExporter(w)
		} else {
			ex = feeds.NewPlainExporter(w, "Meshward indicator reports, exported "+time.Now().UTC().Format(time.RFC3339))
		}
	}
	n := 0
	seen := map[string]bool{}
	for _, r := range reps {
		if source != "" && r.Report.Source != source {
			continue
		}
		k := r.Report.Indicator.Key() + "\x00" + r.Report.Source
		if seen[k] {
			continue // an older report of the same indicator and source
		}
		seen[k] = true
		if err := ex.Write(feeds.EntryFromReport(r.Report)); err != nil {
			return fmt.Errorf("intel export: %w", err)
		}
		n++
	}
	if err := ex.Close(); err != nil {
		return fmt.Errorf("intel export: %w", err)
	}
	if file != nil {
		if err := file.Close(); err != nil {
			return fmt.Errorf("intel export: %w", err)
		}
	}
	if output != "" && output != "-" {
		dest := output
		if format == feeds.FormatMISP {
			dest = filepath.Join(output, "manifest.json")
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "exported %d reports to %s\n", n, dest)
	}
	return nil
}
