package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/alert"
)

func newAlertsCmd() *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:   "alerts",
		Short: "List this node's alerts and silence them",
		Long: `List the alerts this node's rules (alerts.rules in its configuration) are
firing, and the recent ones that resolved; silence one (responder) so that
its notifications (reminders and resolution too) stop for a while.`,
		Example: `  meshward alerts list
  meshward alerts silence 3f2a9c0d1e8b7a65 --for 2h`,
	}, &f)
	var recent bool
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the alerts firing, and with --recent those resolved lately",
		Example: `  meshward alerts list
  meshward alerts list --recent -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.AlertList, error) {
				l, err := c.Alerts(cmd.Context())
				if !recent {
					l.Recent = nil
				}
				return l, err
			}, printAlerts)
		},
	}
	list.Flags().BoolVar(&recent, "recent", false, "also the alerts resolved (or evicted) lately")
	var dur time.Duration
	silence := &cobra.Command{
		Use:   "silence ALERT-ID",
		Short: "Silence an alert's notifications for a while; --for 0s lifts it (responder)",
		Long: `Silence an alert, by the ID that "alerts list" shows: no notification of it
(firing, reminder or resolution) is sent until the silence ends; it is still
tracked and listed. The ID stays the same for a rule and group, so the
silence holds if the alert fires again. Written to the audit trail.`,
		Example: `  meshward alerts silence 3f2a9c0d1e8b7a65 --for 2h
  meshward alerts silence 3f2a9c0d1e8b7a65 --for 0s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dur < 0 || dur > admin.MaxSilence {
				return fmt.Errorf("--for %s: want 0s (lift) to %s", dur, admin.MaxSilence)
			}
			return run(cmd, &f, func(c *admin.Client) (alert.Alert, error) {
				return c.SilenceAlert(cmd.Context(), args[0], dur)
			}, printSilenced)
		},
	}
	silence.Flags().DurationVar(&dur, "for", time.Hour, "how long (at most 720h; 0s lifts the silence)")
	cmd.AddCommand(list, silence)
	return cmd
}

func printAlerts(w io.Writer, l admin.AlertList) {
	fmt.Fprintln(w, "ID\tSTATE\tRULE\tSEVERITY\tGROUP\tSINCE\tNOTIFIED\tSILENCED UNTIL\tDETAIL")
	for _, as := range [][]alert.Alert{l.Active, l.Recent} {
		for _, a := range as {
			silenced := "-"
			if !a.SilencedUntil.IsZero() {
				silenced = timeCell(a.SilencedUntil)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.ID, a.State, a.Rule, a.Severity, truncate(a.Group, 64),
				timeCell(a.Since), a.Notifications, silenced, truncate(a.Detail, 80))
		}
	}
}

func printSilenced(w io.Writer, a alert.Alert) {
	if a.SilencedUntil.IsZero() {
		fmt.Fprintf(w, "alert %s (%s, %s) is no longer silenced\n", a.ID, a.Rule, a.Group)
		return
	}
	fmt.Fprintf(w, "alert %s (%s, %s) silenced until %s\n", a.ID, a.Rule, a.Group, timeCell(a.SilencedUntil))
}
