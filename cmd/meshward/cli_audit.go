package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

func newAuditCmd() *cobra.Command {
	var f clientFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit trail of changes made through the admin API",
		Long: `Show who changed what through this node's admin API, when, and with what
result, newest first. Refused changes (wrong role) are listed too.`,
		Example: "  meshward audit\n  meshward audit --limit 500 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.AuditEntry, error) { return c.Audit(cmd.Context(), limit) },
				func(w io.Writer, es []admin.AuditEntry) {
					fmt.Fprintln(w, "TIME\tACTOR\tACTION\tTARGET\tRESULT\tDETAIL")
					for _, e := range es {
						res := e.Result
						if e.Error != "" {
							res += ": " + truncate(e.Error, 60)
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", timeCell(e.Time), e.Actor, e.Action, orDash(e.Target), res, orDash(truncate(e.Detail, 60)))
					}
				})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many entries (1 to 10000)")
	f.register(cmd)
	return cmd
}
