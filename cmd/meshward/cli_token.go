package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

func newTokenCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "token",
		Aliases: []string{"tokens"},
		Short:   "Create, list and revoke admin API tokens (admin) and join tokens",
		Long: `API tokens grant one role on this node: viewer (read), responder (read and
local blocks) or admin (everything). Join tokens admit new nodes to the
mesh (token create --join). A token's secret is printed once, when it is
created.`,
		Example: "  meshward token create --role viewer --name grafana\n  meshward token create --join --ttl 1h --uses 1\n  meshward token list\n  meshward token revoke 0a1b2c3d4e5f6071",
	}, &f)
	var role, name string
	var join bool
	var ttl time.Duration
	var uses int
	js := &signer{deps: deps}
	create := &cobra.Command{
		Use:   "create --role ROLE | --join",
		Short: "Create an API token, or a join token for a new node (--join), and print its secret once",
		Long: `Without --join, create an admin API token for this node with a role: viewer
(read), responder (read and local blocks) or admin (everything).

With --join, create a join token that admits new nodes to the mesh: --uses
nodes at most, within --ttl. The command is signed with your admin operator
key; the mesh keeps only the token's public half. Put the secret in the
joining node's consensus.join_token.

Either secret is printed once, alone on stdout, so that it can be captured.`,
		Example: `  meshward token create --role viewer
  MESHWARD_TOKEN=$(meshward token create --role responder --name oncall)
  meshward token create --join --ttl 1h --uses 1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if join {
				if role != "" || name != "" {
					return errors.New("--role and --name are for API tokens; a join token (--join) has neither")
				}
				return createJoinToken(cmd, &f, js, ttl, uses)
			}
			if role == "" {
				return errors.New(`--role is required: viewer, responder or admin (or --join for a join token)`)
			}
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
	create.Flags().StringVar(&role, "role", "", "viewer, responder or admin (an API token)")
	create.Flags().StringVar(&name, "name", "", "a name for the API token, shown in the audit trail (default token-<id>)")
	create.Flags().BoolVar(&join, "join", false, "create a join token for new nodes instead (signed by an admin operator key)")
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "with --join: how long the token admits nodes")
	create.Flags().IntVar(&uses, "uses", 1, "with --join: how many nodes it admits")
	js.key.register(create.Flags())
	var listJoin bool
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List API tokens, or the mesh's join tokens (--join), never their secrets",
		Example: "  meshward token list\n  meshward token list --join",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listJoin {
				return run(cmd, &f, func(c *admin.Client) ([]admin.JoinTokenInfo, error) {
					st, err := c.Operator(cmd.Context())
					return st.JoinTokens, err
				}, printJoinTokens)
			}
			return run(cmd, &f, func(c *admin.Client) ([]admin.Token, error) { return c.Tokens(cmd.Context()) }, printTokens)
		},
	}
	list.Flags().BoolVar(&listJoin, "join", false, "list the mesh's join tokens instead")
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

// joinTokenView is a new join token with its secret, shown this once.
type joinTokenView struct {
	ID      string    `json:"id"`
	Secret  string    `json:"token"`
	Uses    int       `json:"uses"`
	Expires time.Time `json:"expires"`
	KeyID   string    `json:"key_id"` // the operator key that signed it
}

// createJoinToken makes a join token secret, has the mesh keep its public
// half (an operator-signed create_join_token) and prints the secret once.
func createJoinToken(cmd *cobra.Command, f *clientFlags, s *signer, ttl time.Duration, uses int) error {
	secs, err := seconds("ttl", ttl)
	if err != nil {
		return err
	}
	secret, pub, err := s.deps.newJoinToken()
	if err != nil {
		return err
	}
	oc := intel.OperatorCommand{Op: intel.OpCreateJoinToken, TokenKey: pub, TokenUses: uses, TokenTTLSeconds: secs}
	var issued time.Time
	var joinAddr string // this node's address, for the joiner's consensus.join
	return run(cmd, f, func(c *admin.Client) (joinTokenView, error) {
		issued = s.deps.now().UTC()
		res, err := s.submit(cmd.Context(), c, oc)
		if err != nil {
			return joinTokenView{}, err
		}
		v := joinTokenView{ID: intel.JoinTokenID(pub), Secret: secret, Uses: uses, Expires: issued.Add(ttl), KeyID: res.KeyID}
		if st, err := c.Status(cmd.Context()); err == nil && len(st.Node.Addrs) > 0 {
			joinAddr = st.Node.Addrs[0]
		}
		return v, nil
	}, func(w io.Writer, v joinTokenView) {
		// The secret alone on stdout, so that it can be captured.
		fmt.Fprintln(w, v.Secret)
		if joinAddr == "" {
			joinAddr = "<a member's address>"
		}
		fmt.Fprintf(cmd.ErrOrStderr(), `created join token %s, signed by %s: it admits %d node(s) until %s; it is shown only this once.
On the joining node, set it in the configuration:
  consensus:
    join: [%q]
    join_token: <the token above>
`, v.ID, v.KeyID, v.Uses, timeCell(v.Expires), joinAddr)
	})
}

func printJoinTokens(w io.Writer, ts []admin.JoinTokenInfo) {
	fmt.Fprintln(w, "ID\tUSED\tEXPIRES\tCREATED BY")
	for _, t := range ts {
		fmt.Fprintf(w, "%s\t%d/%d\t%s\t%s\n", t.ID, t.Used, t.Uses, timeCell(t.Expires), orDash(t.CreatedBy))
	}
}
