package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

// The compliance noun: does the kernel enforce what the node (or every
// node) should?
func newComplianceCmd() *cobra.Command {
	var f clientFlags
	var mesh bool
	var deadline time.Duration
	cmd := &cobra.Command{
		Use:   "compliance",
		Short: "Does the kernel enforce what this node (or every node) should?",
		Long: `Compliance shows whether the kernel enforces what the node should — the
blocks in the firewall sets, the segmentation rules and sets — as of the
node's last check: compliant, or out of compliance since when and why. A
drift is repaired at once; the last one is shown with how long it lasted.
With --mesh every member of the mesh answers (a mesh-wide query).`,
		Example: "  meshward compliance\n  meshward compliance --mesh --deadline 2s\n  meshward compliance -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !mesh {
				return run(cmd, &f, func(c *admin.Client) (admin.ComplianceReport, error) {
					return c.Compliance(cmd.Context())
				}, printCompliance)
			}
			if f.timeout > 0 && f.timeout < deadline+5*time.Second {
				f.timeout = deadline + 5*time.Second // the node waits for the deadline first
			}
			return run(cmd, &f, func(c *admin.Client) (admin.QueryView, error) {
				return c.Query(cmd.Context(), "compliance", "", deadline)
			}, printMeshCompliance)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&mesh, "mesh", false, "ask every member of the mesh")
	cmd.Flags().DurationVar(&deadline, "deadline", 5*time.Second, "with --mesh: how long to wait for the members' answers (at most 60s)")
	return cmd
}

func complianceCell(compliant bool, since time.Time) string {
	if compliant {
		return "yes"
	}
	return "NO since " + timeCell(since)
}

func printCompliance(w io.Writer, r admin.ComplianceReport) {
	fmt.Fprintf(w, "Node:\t%s (%s)\n", r.Node, orDash(r.Site))
	fmt.Fprintf(w, "Compliant:\t%s\n", complianceCell(r.Compliant, r.OutSince))
	for _, reason := range r.Reasons {
		fmt.Fprintf(w, "  reason:\t%s\n", reason)
	}
	fmt.Fprintf(w, "Checked:\t%s (%d checks, %d drifts, %d repairs, %d failed repairs, %d unreadable)\n",
		timeCell(r.CheckedAt), r.Checks, r.Drifts, r.Repairs, r.RepairFailures, r.CheckErrors)
	if d := r.LastDrift; d != nil {
		fmt.Fprintf(w, "Last drift:\t%s to %s (%s)\n", timeCell(d.OutSince), timeCell(d.At), d.Out.Round(time.Millisecond))
		for _, reason := range d.Reasons {
			fmt.Fprintf(w, "  reason:\t%s\n", reason)
		}
	}
	s := r.Segmentation
	mode := "enforced"
	if !s.Enforced {
		mode = "dry run (compiled, not applied)"
	}
	fmt.Fprintf(w, "Segmentation:\t%s: %d zones, %d flows, %d quarantined; %d input and %d forward rules\n",
		mode, s.Zones, s.Flows, s.Quarantined, s.InputRules, s.ForwardRules)
	if s.Hash != "" {
		fmt.Fprintf(w, "  program:\t%s compiled %s, applied %s\n", s.Hash[:min(12, len(s.Hash))], timeCell(s.CompiledAt), timeCell(s.AppliedAt))
	}
	if s.Error != "" {
		fmt.Fprintf(w, "  error:\t%s\n", s.Error)
	}
}

func printMeshCompliance(w io.Writer, v admin.QueryView) {
	fmt.Fprintln(w, "SITE\tNODE\tSTATUS\tCOMPLIANT\tSEGMENTATION\tREASONS")
	out := 0
	for _, res := range v.Results {
		if res.Status != "answered" {
			fmt.Fprintf(w, "%s\t%s\t%s\t-\t-\t%s\n", orDash(res.Site), short(res.Node), res.Status, orDash(res.Error))
			continue
		}
		var r admin.ComplianceReport
		if err := json.Unmarshal(res.Answer, &r); err != nil {
			fmt.Fprintf(w, "%s\t%s\t%s\t-\t-\tunreadable answer: %v\n", orDash(res.Site), short(res.Node), res.Status, err)
			continue
		}
		if !r.Compliant {
			out++
		}
		seg := fmt.Sprintf("%d flows", r.Segmentation.Flows)
		if !r.Segmentation.Enforced {
			seg += " (dry run)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(res.Site), short(res.Node), res.Status,
			complianceCell(r.Compliant, r.OutSince), seg, orDash(strings.Join(r.Reasons, "; ")))
	}
	fmt.Fprintf(w, "\t\t%d answered, %d out of compliance\t\t\t(deadline %s)\n", v.Summary["answered"], out, v.Timeout)
}
