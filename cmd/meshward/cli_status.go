package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

func newStatusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this node and the mesh as it sees it",
		Long: `Show the node's identity, its view of the mesh (leader, voters, members,
connected peers, policies) and its health.`,
		Example: `  meshward status
  meshward status --node https://10.0.0.1:7947 --ca-cert ca.pem -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.Status, error) { return c.Status(cmd.Context()) }, printStatus)
		},
	}
	f.register(cmd)
	return cmd
}

func printStatus(w io.Writer, s admin.Status) {
	health := "ok"
	if !s.Health.OK {
		health = "DEGRADED"
	}
	fmt.Fprintf(w, "Node:\t%s\n", s.Node.ID)
	fmt.Fprintf(w, "Site:\t%s\n", orDash(s.Node.Site))
	fmt.Fprintf(w, "Version:\t%s\n", orDash(s.Node.Version))
	fmt.Fprintf(w, "Started:\t%s\n", timeCell(s.Node.StartedAt))
	fmt.Fprintf(w, "Health:\t%s\n", health)
	for _, p := range s.Health.Problems {
		fmt.Fprintf(w, "  problem:\t%s\n", p)
	}
	leader := orDash(s.Mesh.Leader)
	if s.Mesh.IsLeader {
		leader += " (this node)"
	}
	fmt.Fprintf(w, "Kind:\t%s\n", orDash(s.Mesh.Kind))
	fmt.Fprintf(w, "Raft state:\t%s\n", orDash(s.Mesh.RaftState))
	fmt.Fprintf(w, "Leader:\t%s\n", leader)
	fmt.Fprintf(w, "Term:\t%d\n", s.Mesh.Term)
	fmt.Fprintf(w, "Commit/applied:\t%d/%d\n", s.Mesh.CommitIndex, s.Mesh.AppliedIndex)
	fmt.Fprintf(w, "Voters:\t%d\n", len(s.Mesh.Voters))
	fmt.Fprintf(w, "Members:\t%d\n", s.Mesh.Members)
	fmt.Fprintf(w, "Peers:\t%d\n", s.Mesh.Peers)
	fmt.Fprintf(w, "Policies:\t%d\n", s.Mesh.Policies)
	if len(s.Mesh.Protected) > 0 {
		fmt.Fprintf(w, "Protected:\t%s\n", strings.Join(s.Mesh.Protected, ", "))
	}
	for _, a := range s.Node.Addrs {
		fmt.Fprintf(w, "Address:\t%s\n", a)
	}
	names := make([]string, 0, len(s.Node.Counters))
	for k := range s.Node.Counters {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "  %s:\t%d\n", k, s.Node.Counters[k])
	}
}
