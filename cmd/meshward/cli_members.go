package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

func newMembersCmd() *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "members",
		Short:   "List or remove the nodes admitted to the mesh",
		Example: "  meshward members list\n  meshward members remove 12D3KooW...",
	}, &f)
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the roster: every admitted node, voter or not",
		Example: "  meshward members list\n  meshward members list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.Member, error) { return c.Members(cmd.Context()) },
				func(w io.Writer, ms []admin.Member) {
					fmt.Fprintln(w, "ID\tSITE\tVOTER\tLEADER\tCONNECTED\tADMITTED")
					for _, m := range ms {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, orDash(m.Site), yesNo(m.Voter), yesNo(m.Leader), yesNo(m.Connected), timeCell(m.AdmittedAt))
					}
				})
		},
	}
	remove := &cobra.Command{
		Use:     "remove NODE-ID",
		Aliases: []string{"rm"},
		Short:   "Remove a node from the mesh (admin)",
		Long: `Remove a node from the roster and the Raft configuration, through consensus.
Its envelopes are no longer accepted; it must join again with a join token.`,
		Example: "  meshward members remove 12D3KooWAbc...",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (map[string]string, error) {
				return map[string]string{"removed": args[0]}, c.RemoveMember(cmd.Context(), args[0])
			}, func(w io.Writer, _ map[string]string) { fmt.Fprintf(w, "removed member %s\n", args[0]) })
		},
	}
	cmd.AddCommand(list, remove)
	return cmd
}

func newPeersCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "peers",
		Short:   "List the libp2p peers this node is connected to",
		Example: "  meshward peers\n  meshward peers -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.Peer, error) { return c.Peers(cmd.Context()) },
				func(w io.Writer, ps []admin.Peer) {
					fmt.Fprintln(w, "ID\tSITE\tMEMBER\tADDRESS")
					for _, p := range ps {
						addr := "-"
						if len(p.Addrs) > 0 {
							addr = p.Addrs[0]
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.ID, orDash(p.Site), yesNo(p.Member), addr)
					}
				})
		},
	}
	f.register(cmd)
	return cmd
}
