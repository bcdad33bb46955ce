package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

func newDetectionsCmd() *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:   "detections",
		Short: "List this node's own detections and acknowledge them",
		Long: `List the sightings this node's own detectors produced, each with a stable ID
and who acknowledged it; acknowledge one (responder) so that the team sees it
is handled, or withdraw an acknowledgement.`,
		Example: `  meshward detections list --unacknowledged
  meshward detections ack 5c1e0f9a2b7d4e63 --note "blocked at the edge"`,
	}, &f)
	var limit int
	var acked, unacked bool
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List this node's own detections, newest first, with who acknowledged them",
		Example: `  meshward detections list --limit 50
  meshward detections list --unacknowledged -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := admin.DetectionQuery{Limit: limit}
			switch {
			case acked && unacked:
				return errors.New("--acknowledged and --unacknowledged exclude each other")
			case acked:
				q.Acknowledged = &acked
			case unacked:
				no := false
				q.Acknowledged = &no
			}
			return run(cmd, &f, func(c *admin.Client) ([]admin.Detection, error) { return c.Detections(cmd.Context(), q) }, printDetections)
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "at most this many (1 to 10000)")
	list.Flags().BoolVar(&acked, "acknowledged", false, "only acknowledged detections")
	list.Flags().BoolVar(&unacked, "unacknowledged", false, "only detections nobody has acknowledged")
	var note string
	ack := &cobra.Command{
		Use:   "ack DETECTION-ID",
		Short: "Acknowledge a detection, so that the team sees it is handled (responder)",
		Long: `Acknowledge one of this node's detections, by the ID that "detections list"
shows, with an optional note. A detection is acknowledged once: a second
acknowledgement is refused and names the first. The acknowledgement is
written to the audit trail.`,
		Example: `  meshward detections ack 5c1e0f9a2b7d4e63
  meshward detections ack 5c1e0f9a2b7d4e63 --note "false positive: our scanner"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.Detection, error) { return c.Ack(cmd.Context(), args[0], note) }, printDetection)
		},
	}
	ack.Flags().StringVar(&note, "note", "", "what was done or found, for the team (at most 1024 bytes)")
	unack := &cobra.Command{
		Use:     "unack DETECTION-ID",
		Short:   "Withdraw the acknowledgement of a detection (responder)",
		Example: "  meshward detections unack 5c1e0f9a2b7d4e63",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (map[string]string, error) {
				return map[string]string{"unacknowledged": args[0]}, c.Unack(cmd.Context(), args[0])
			}, func(w io.Writer, _ map[string]string) {
				fmt.Fprintf(w, "withdrew the acknowledgement of detection %s\n", args[0])
			})
		},
	}
	cmd.AddCommand(list, ack, unack)
	return cmd
}

func printDetections(w io.Writer, ds []admin.Detection) {
	fmt.Fprintln(w, "ID\tRECEIVED\tINDICATOR\tDETECTOR\tCOUNT\tCONFIDENCE\tLAST SEEN\tACKNOWLEDGED BY")
	for _, d := range ds {
		ack := "-"
		if d.Ack != nil {
			ack = d.Ack.By
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.ID, timeCell(d.Received), truncate(d.Sighting.Sighting.Indicator.Value, 64),
			d.Sighting.Sighting.Detector, d.Sighting.Sighting.Count, d.Sighting.Sighting.Confidence, timeCell(d.Sighting.Sighting.LastSeen), ack)
	}
}

func printDetection(w io.Writer, d admin.Detection) {
	fmt.Fprintf(w, "ID:\t%s\n", d.ID)
	fmt.Fprintf(w, "Indicator:\t%s (%s)\n", d.Sighting.Sighting.Indicator.Value, d.Sighting.Sighting.Indicator.Type)
	fmt.Fprintf(w, "Detector:\t%s\n", d.Sighting.Sighting.Detector)
	fmt.Fprintf(w, "Received:\t%s\n", timeCell(d.Received))
	if d.Ack == nil {
		fmt.Fprintf(w, "Acknowledged:\tno\n")
		return
	}
	fmt.Fprintf(w, "Acknowledged:\tby %s at %s\n", d.Ack.By, timeCell(d.Ack.At))
	if d.Ack.Note != "" {
		fmt.Fprintf(w, "Note:\t%s\n", d.Ack.Note)
	}
}
