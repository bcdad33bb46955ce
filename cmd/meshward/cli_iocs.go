package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel/risk"
)

func newIOCsCmd() *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "iocs",
		Aliases: []string{"ioc", "indicators"},
		Short:   "List, show, search and share indicators of compromise",
		Example: "  meshward iocs list\n  meshward iocs show 203.0.113.7\n  meshward iocs search example.com\n  meshward iocs publish 198.51.100.23 --confidence 80 --label scanner\n  meshward iocs reports --active",
	}, &f)
	var typ, sortBy string
	var limit int
	var at timeFlag
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List indicators from the most recent sightings, most recently seen first or highest risk first",
		Example: "  meshward iocs list\n  meshward iocs list --type ipv6 --limit 20\n  meshward iocs list --sort risk",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch sortBy {
			case "", "last_seen", "risk":
			default:
				return fmt.Errorf("--sort %q: want last_seen or risk", sortBy)
			}
			return run(cmd, &f, func(c *admin.Client) ([]admin.IOC, error) {
				return c.IOCs(cmd.Context(), admin.IOCQuery{Type: typ, Limit: limit, Sort: sortBy, At: at.t})
			}, func(w io.Writer, iocs []admin.IOC) {
				if sortBy == "risk" {
					printRiskIOCs(w, iocs)
					return
				}
				printIOCs(w, iocs)
			})
		},
	}
	list.Flags().StringVar(&sortBy, "sort", "last_seen", "order: last_seen (most recently seen first) or risk (highest risk first, with a RISK column)")
	list.Flags().Var(&at, "at", "compute risk as at this RFC 3339 time (default: the node's clock)")
	search := &cobra.Command{
		Use:     "search TEXT",
		Short:   "List indicators whose value contains TEXT (case-insensitive)",
		Example: "  meshward iocs search 203.0.113.\n  meshward iocs search evil --type domain",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.IOC, error) {
				return c.IOCs(cmd.Context(), admin.IOCQuery{Text: args[0], Type: typ, Limit: limit})
			}, printIOCs)
		},
	}
	for _, c := range []*cobra.Command{list, search} {
		c.Flags().StringVar(&typ, "type", "", "only this indicator type (ipv4, ipv6, cidr, domain, url, sha256)")
		c.Flags().IntVar(&limit, "limit", 100, "at most this many indicators")
	}
	var showType string
	var showAt timeFlag
	show := &cobra.Command{
		Use:     "show INDICATOR",
		Short:   "Show one indicator: its sightings, the policies that cover it and its reports",
		Example: "  meshward iocs show 203.0.113.7\n  meshward iocs show https://evil.example/payload -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.IOCDetail, error) {
				return c.IOCAt(cmd.Context(), args[0], showType, showAt.t)
			}, func(w io.Writer, d admin.IOCDetail) {
				fmt.Fprintf(w, "Indicator:\t%s (%s)\n", d.Indicator.Value, d.Indicator.Type)
				fmt.Fprintf(w, "Sightings:\t%d from %d nodes\n", d.Sightings, d.Origins)
				fmt.Fprintf(w, "First seen:\t%s\n", timeCell(d.FirstSeen))
				fmt.Fprintf(w, "Last seen:\t%s\n", timeCell(d.LastSeen))
				fmt.Fprintf(w, "Detectors:\t%s\n", orDash(strings.Join(d.Detectors, ", ")))
				fmt.Fprintln(w)
				if d.Risk != nil {
					printRisk(w, d.Risk)
					fmt.Fprintln(w)
				}
				if len(d.PolicyList) > 0 {
					printPolicies(w, d.PolicyList)
					fmt.Fprintln(w)
				}
				printSightings(w, d.SightingList)
				if len(d.ReportList) > 0 {
					fmt.Fprintln(w)
					printReports(w, d.ReportList)
				}
			})
		},
	}
	show.Flags().StringVar(&showType, "type", "", "indicator type; guessed when empty")
	show.Flags().Var(&showAt, "at", "compute risk as at this RFC 3339 time (default: the node's clock)")
	cmd.AddCommand(list, show, search)
	cmd.AddCommand(newReportCmds(&f)...)
	return cmd
}

func printIOCs(w io.Writer, iocs []admin.IOC) {
	fmt.Fprintln(w, "INDICATOR\tTYPE\tSIGHTINGS\tNODES\tLAST SEEN\tDETECTORS\tPOLICIES")
	for _, i := range iocs {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", truncate(i.Indicator.Value, 64), i.Indicator.Type, i.Sightings, i.Origins,
			timeCell(i.LastSeen), orDash(strings.Join(i.Detectors, ",")), orDash(strings.Join(i.Policies, ",")))
	}
}

// printRiskIOCs is printIOCs with the risk first.
func printRiskIOCs(w io.Writer, iocs []admin.IOC) {
	fmt.Fprintln(w, "RISK\tINDICATOR\tTYPE\tSIGHTINGS\tNODES\tLAST SEEN\tDETECTORS\tPOLICIES")
	for _, i := range iocs {
		risk := "-"
		if i.Risk != nil {
			risk = fmt.Sprint(*i.Risk)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", risk, truncate(i.Indicator.Value, 64), i.Indicator.Type, i.Sightings, i.Origins,
			timeCell(i.LastSeen), orDash(strings.Join(i.Detectors, ",")), orDash(strings.Join(i.Policies, ",")))
	}
}

// printRisk explains a risk score: each factor's value (the fraction of
// its weight earned), weight, points and where it came from. The points
// add up to the score.
func printRisk(w io.Writer, r *risk.Result) {
	fmt.Fprintf(w, "Risk:\t%d/100 (at %s)\n", r.Score, timeCell(r.At))
	fmt.Fprintln(w, "FACTOR\tVALUE\tWEIGHT\tPOINTS\tDETAIL")
	for _, f := range r.Factors {
		fmt.Fprintf(w, "%s\t%.3f\t%d\t%.2f\t%s\n", f.Name, f.Value, f.Weight, f.Contribution, orDash(f.Detail))
	}
}

// timeFlag is an optional RFC 3339 time flag.
type timeFlag struct{ t time.Time }

func (f *timeFlag) String() string {
	if f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("want an RFC 3339 time such as 2026-12-01T10:00:00Z")
	}
	f.t = t
	return nil
}

func (f *timeFlag) Type() string { return "time" }
