package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

func newProtectCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "protect",
		Aliases: []string{"protected"},
		Short:   "List, add and remove the mesh's protected ranges",
		Long: `No block may cover a protected range, on any node. Protected ranges are
committed mesh-wide: adding or removing one is an operator command, signed
with an admin operator key.`,
		Example: `  meshward protect list
  meshward protect add 192.0.2.53 --reason "site resolver"
  meshward protect remove 10.20.0.0/16`,
	}, &f)
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the protected ranges this node enforces",
		Example: "  meshward protect list\n  meshward protect list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]string, error) {
				st, err := c.Status(cmd.Context())
				return nonNilStrings(st.Mesh.Protected), err
			}, func(w io.Writer, ps []string) {
				fmt.Fprintln(w, "PROTECTED")
				for _, p := range ps {
					fmt.Fprintln(w, p)
				}
			})
		},
	}
	change := func(op intel.OperatorOp) *cobra.Command {
		var reason string
		s := &signer{deps: deps}
		c := &cobra.Command{
			Args: cobra.ExactArgs(1),
			RunE: signedCmd(&f, s, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
				p, err := intel.ParsePrefix(args[0])
				if err != nil {
					return intel.OperatorCommand{}, err
				}
				return intel.OperatorCommand{Op: op, Prefix: p.String(), Reason: reason}, nil
			}, nil),
		}
		if op == intel.OpProtect {
			c.Use = "add CIDR"
			c.Short = "Protect an address or range mesh-wide (signed by an admin operator key)"
			c.Example = "  meshward protect add 10.0.0.0/8\n  meshward protect add 192.0.2.53 --reason \"site resolver\""
		} else {
			c.Use = "remove CIDR"
			c.Aliases = []string{"rm"}
			c.Short = "Stop protecting a range mesh-wide (signed by an admin operator key)"
			c.Example = "  meshward protect remove 10.20.0.0/16"
		}
		c.Flags().StringVar(&reason, "reason", "", "why, for the audit trail and other operators")
		s.key.register(c.Flags())
		return c
	}
	cmd.AddCommand(list, change(intel.OpProtect), change(intel.OpUnprotect))
	return cmd
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
