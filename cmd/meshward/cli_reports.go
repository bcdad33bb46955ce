package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

func printReports(w io.Writer, rs []admin.Report) {
	fmt.Fprintln(w, "RECEIVED\tORIGIN\tSITE\tINDICATOR\tSOURCE\tCONFIDENCE\tLABELS\tTECHNIQUE\tVALID UNTIL\tACTIVE")
	for _, r := range rs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", timeCell(r.Received), short(r.Origin), orDash(r.Site),
			truncate(r.Report.Indicator.Value, 64), truncate(r.Report.Source, 32), r.Report.Confidence,
			orDash(truncate(strings.Join(r.Report.Labels, ","), 32)), orDash(r.Report.Technique),
			expiresCell(r.Report.ValidUntil), yesNo(r.Active))
	}
}

func printReport(w io.Writer, r admin.Report) {
	fmt.Fprintf(w, "Indicator:\t%s (%s)\n", r.Report.Indicator.Value, r.Report.Indicator.Type)
	fmt.Fprintf(w, "Origin:\t%s seq %d\n", r.Origin, r.Seq)
	fmt.Fprintf(w, "Source:\t%s\n", r.Report.Source)
	fmt.Fprintf(w, "Confidence:\t%d\n", r.Report.Confidence)
	fmt.Fprintf(w, "Labels:\t%s\n", orDash(strings.Join(r.Report.Labels, ", ")))
	fmt.Fprintf(w, "Technique:\t%s\n", orDash(r.Report.Technique))
	fmt.Fprintf(w, "Description:\t%s\n", orDash(r.Report.Description))
	fmt.Fprintf(w, "Valid from:\t%s\n", timeCell(r.Report.ValidFrom))
	fmt.Fprintf(w, "Valid until:\t%s\n", expiresCell(r.Report.ValidUntil))
}

// newReportCmds returns `iocs publish` and `iocs reports`, which share the
// iocs command's client flags.
func newReportCmds(f *clientFlags) []*cobra.Command {
	var req admin.ReportRequest
	publish := &cobra.Command{
		Use:   "publish INDICATOR",
		Short: "Share an indicator report with every node of the mesh (responder)",
		Long: `Sign an indicator report with this node's key, store it and gossip it to
every node. A report is intelligence: it informs analysts and scoring and
never blocks anything by itself (use "policy block" for that). Its source is
"operator:<your token's name>"; it is valid from now for --valid-for, or
without end when --valid-for is 0. The publication is written to the audit
trail.`,
		Example: `  meshward iocs publish 198.51.100.23 --confidence 80 --label scanner
  meshward iocs publish evil.example --confidence 90 --label c2 --label botnet \
      --technique T1071 --description "beaconing every 60s" --valid-for 720h`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := req
			r.Indicator = args[0]
			return run(cmd, f, func(c *admin.Client) (admin.Report, error) { return c.PublishReport(cmd.Context(), r) }, printReport)
		},
	}
	pf := publish.Flags()
	pf.StringVar(&req.Type, "type", "", "indicator type (ipv4, ipv6, cidr, domain, url, sha256); guessed when empty")
	pf.IntVar(&req.Confidence, "confidence", 50, "how sure you are, 0 to 100")
	pf.StringArrayVar(&req.Labels, "label", nil, "a label such as botnet or c2; repeat for more (at most 16)")
	pf.StringVar(&req.Technique, "technique", "", "ATT&CK technique ID, e.g. T1110")
	pf.StringVar(&req.Description, "description", "", "what is known, for analysts (at most 1024 bytes)")
	pf.StringVar(&req.ValidFor, "valid-for", "720h", "how long the report applies; 0 means without end")

	var limit int
	var active bool
	reports := &cobra.Command{
		Use:   "reports",
		Short: "List the indicator reports this node holds, from every node, newest first",
		Example: `  meshward iocs reports
  meshward iocs reports --active --limit 20 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := admin.ReportQuery{Limit: limit}
			if active {
				q.Active = &active
			}
			return run(cmd, f, func(c *admin.Client) ([]admin.Report, error) { return c.Reports(cmd.Context(), q) }, printReports)
		},
	}
	reports.Flags().IntVar(&limit, "limit", 100, "at most this many (1 to 1000)")
	reports.Flags().BoolVar(&active, "active", false, "only the reports valid now")
	return []*cobra.Command{publish, reports}
}
