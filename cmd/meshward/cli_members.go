package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

func newMembersCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "members",
		Short:   "List or remove the nodes admitted to the mesh",
		Example: "  meshward members list\n  meshward members remove 12D3KooW...",
	}, &f)
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the roster: every admitted node and its kind (server, standby or edge)",
		Example: "  meshward members list\n  meshward members list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.Member, error) { return c.Members(cmd.Context()) },
				func(w io.Writer, ms []admin.Member) {
					fmt.Fprintln(w, "ID\tSITE\tKIND\tVOTER\tLEADER\tCONNECTED\tTRUST\tADMITTED")
					for _, m := range ms {
						trust := "-"
						if m.Trust != nil {
							trust = fmt.Sprint(*m.Trust)
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, orDash(m.Site), orDash(m.Kind), yesNo(m.Voter), yesNo(m.Leader), yesNo(m.Connected), trust, timeCell(m.AdmittedAt))
					}
				})
		},
	}
	s := &signer{deps: deps}
	remove := &cobra.Command{
		Use:     "remove NODE-ID",
		Aliases: []string{"rm"},
		Short:   "Remove a node from the mesh (signed by an admin operator key)",
		Long: `Remove a node from the roster and the Raft configuration, through consensus.
Its envelopes are no longer accepted; it must join again with a join token.
The command is signed with your operator key.`,
		Example: "  meshward members remove 12D3KooWAbc...",
		Args:    cobra.ExactArgs(1),
		RunE: signedCmd(&f, s, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			return intel.OperatorCommand{Op: intel.OpRemoveMember, Member: args[0]}, nil
		}, nil),
	}
	s.key.register(remove.Flags())
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
