package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

func newSightingsCmd() *cobra.Command {
	return newSightingListCmd("sightings", "List the sightings this node holds, from every node",
		"List the signed sightings this node has stored: its own and those gossiped by other nodes.",
		(*admin.Client).Sightings)
}

// newSightingListCmd makes `NOUN list` for sightings and detections.
func newSightingListCmd(noun, short, long string, fetch func(*admin.Client, context.Context, int) ([]admin.Sighting, error)) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     noun,
		Short:   short,
		Long:    long,
		Example: fmt.Sprintf("  meshward %s list\n  meshward %s list --limit 20 -o json", noun, noun),
	}, &f)
	var limit int
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   short + ", newest first",
		Example: fmt.Sprintf("  meshward %s list --limit 50", noun),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.Sighting, error) { return fetch(c, cmd.Context(), limit) }, printSightings)
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "at most this many (1 to 10000)")
	cmd.AddCommand(list)
	return cmd
}

func printSightings(w io.Writer, ss []admin.Sighting) {
	fmt.Fprintln(w, "RECEIVED\tORIGIN\tSITE\tINDICATOR\tDETECTOR\tCOUNT\tCONFIDENCE\tLAST SEEN")
	for _, s := range ss {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", timeCell(s.Received), short(s.Origin), orDash(s.Sighting.Site),
			truncate(s.Sighting.Indicator.Value, 64), s.Sighting.Detector, s.Sighting.Count, s.Sighting.Confidence, timeCell(s.Sighting.LastSeen))
	}
}
