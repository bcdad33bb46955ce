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

// The query noun: one question to every member of the mesh at once.
func newQueryCmd() *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:   "query",
		Short: "Ask every node of the mesh one question at once",
		Long: `Query puts one question to every member of the mesh through the node, under
one deadline, and prints each member's answer or what became of it:
answered, timed_out, unreachable, refused or error.`,
		Example: "  meshward query ip 203.0.113.7\n  meshward query policy def93028ba188d26\n  meshward query health --deadline 2s",
	}, &f)
	var timeout time.Duration
	cmd.PersistentFlags().DurationVar(&timeout, "deadline", 5*time.Second, "how long to wait for the members' answers (at most 60s)")
	ask := func(kind string) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			value := ""
			if len(args) > 0 {
				value = args[0]
			}
			if f.timeout > 0 && f.timeout < timeout+5*time.Second {
				f.timeout = timeout + 5*time.Second // the node waits for the deadline first
			}
			return run(cmd, &f, func(c *admin.Client) (admin.QueryView, error) {
				return c.Query(cmd.Context(), kind, value, timeout)
			}, printQuery)
		}
	}
	for _, v := range []struct{ use, short, kind, example string }{
		{"ip ADDRESS", "Who has seen an address, and does every node block it?", "indicator", "  meshward query ip 203.0.113.7\n  meshward query ip 2001:db8::7 --deadline 10s -o json"},
		{"indicator VALUE", "Who has seen an indicator (address, range, domain, URL, hash)?", "indicator", "  meshward query indicator 198.51.100.0/24"},
		{"domain NAME", "Who has seen a domain, and does every node block it?", "indicator", "  meshward query domain c2.example.net"},
	} {
		cmd.AddCommand(&cobra.Command{Use: v.use, Short: v.short, Example: v.example, Args: cobra.ExactArgs(1), RunE: ask(v.kind)})
	}
	cmd.AddCommand(
		&cobra.Command{Use: "policy ID", Short: "Does every node know and enforce a mesh-wide policy?",
			Example: "  meshward query policy def93028ba188d26", Args: cobra.ExactArgs(1), RunE: ask("policy")},
		&cobra.Command{Use: "health", Short: "How is every node?", Example: "  meshward query health\n  meshward query health -o json",
			Args: cobra.NoArgs, RunE: ask("health")},
	)
	return cmd
}

func printQuery(w io.Writer, v admin.QueryView) {
	fmt.Fprintln(w, "SITE\tNODE\tSTATUS\tMS\tANSWER")
	for _, r := range v.Results {
		fmt.Fprintf(w, "%s\t%s\t%s\t%.1f\t%s\n", orDash(r.Site), short(r.Node), r.Status, r.Ms, answerCell(r))
	}
	var parts []string
	for _, s := range []string{"answered", "timed_out", "unreachable", "refused", "error"} {
		if n := v.Summary[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	fmt.Fprintf(w, "\t\t%s\t\t(deadline %s)\n", strings.Join(parts, ", "), v.Timeout)
}

// answerCell sums up one member's answer in a line.
func answerCell(r admin.QueryResultView) string {
	if r.Status != "answered" {
		return orDash(r.Error)
	}
	var a map[string]any
	if err := json.Unmarshal(r.Answer, &a); err != nil {
		return string(r.Answer)
	}
	var parts []string
	for _, k := range []string{"sightings", "local", "local_decision", "mesh_policy", "known", "enforcing", "peers", "leader", "mesh_policies", "uptime_seconds"} {
		if v, ok := a[k]; ok && v != "" {
			if k == "leader" {
				v = short(fmt.Sprint(v))
			}
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}
