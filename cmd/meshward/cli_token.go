package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

func newTokenCmd() *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "token",
		Aliases: []string{"tokens"},
		Short:   "Create, list and revoke admin API tokens (admin)",
		Long: `Tokens grant one role: viewer (read), responder (read and local blocks) or
admin (everything). A token's secret is printed once, when it is created.`,
		Example: "  meshward token create --role viewer --name grafana\n  meshward token list\n  meshward token revoke 0a1b2c3d4e5f6071",
	}, &f)
	var role, name string
	create := &cobra.Command{
		Use:   "create --role ROLE",
		Short: "Create a token and print its secret, once",
		Example: `  meshward token create --role viewer
  MESHWARD_TOKEN=$(meshward token create --role responder --name oncall)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := admin.ParseRole(role)
			if err != nil {
				return errors.New(strings.TrimPrefix(err.Error(), admin.ErrInvalid.Error()+": "))
			}
			return run(cmd, &f, func(c *admin.Client) (admin.CreatedToken, error) {
				return c.CreateToken(cmd.Context(), admin.TokenRequest{Name: name, Role: r})
			}, func(w io.Writer, t admin.CreatedToken) {
				// The secret alone on stdout, so that it can be captured.
				fmt.Fprintln(w, t.Secret)
				fmt.Fprintf(cmd.ErrOrStderr(), "created %s token %s (%s); it is shown only this once\n", t.Role, t.ID, t.Name)
			})
		},
	}
	create.Flags().StringVar(&role, "role", "", "viewer, responder or admin (required)")
	create.Flags().StringVar(&name, "name", "", "a name for the token, shown in the audit trail (default token-<id>)")
	create.MarkFlagRequired("role")
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List tokens (never their secrets)",
		Example: "  meshward token list",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.Token, error) { return c.Tokens(cmd.Context()) }, printTokens)
		},
	}
	revoke := &cobra.Command{
		Use:     "revoke TOKEN-ID",
		Short:   "Revoke a token at once",
		Example: "  meshward token revoke 0a1b2c3d4e5f6071",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (map[string]string, error) {
				return map[string]string{"revoked": args[0]}, c.RevokeToken(cmd.Context(), args[0])
			}, func(w io.Writer, _ map[string]string) { fmt.Fprintf(w, "revoked token %s\n", args[0]) })
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func printTokens(w io.Writer, ts []admin.Token) {
	fmt.Fprintln(w, "ID\tNAME\tROLE\tCREATED\tCREATED BY")
	for _, t := range ts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, timeCell(t.CreatedAt), orDash(t.CreatedBy))
	}
}
