package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

// operatorKeyView is an operator key as keygen and pubkey print it.
type operatorKeyView struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
	File      string `json:"file"`
}

func newOperatorCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "operator",
		Aliases: []string{"operators"},
		Short:   "Make an operator key and manage the mesh's operator keys",
		Long: `Mesh-wide commands (block, allow, revoke, protect, member removal, the
corroboration rule, safety floors, operator keys, join tokens) are signed
with an operator's ed25519 key on the operator's machine; the mesh accepts
them only from keys it knows, within the key's role (responder: block,
allow and revoke; admin: everything). The API token still guards the node:
a mesh-wide change needs both.

The key in use is --operator-key FILE, else $` + envOperatorKey + `, else
` + defaultOperatorKeyHint + `.`,
		Example: `  meshward operator keygen
  meshward operator add "meshward-operator-ed25519 AAAA..." --role responder --name alice
  meshward operator list`,
	}, &f)

	var out string
	keygen := &cobra.Command{
		Use:   "keygen",
		Short: "Make a new operator key (never overwrites one) and print its public key",
		Long: `Write a new ed25519 operator key, readable by you only (mode 0600), to --out or
` + defaultOperatorKeyHint + `, and print its public key. An existing file is
never replaced. Register the public key before signing with it: on the
mesh's first node in consensus.bootstrap_operators, or on a running mesh
with meshward operator add, run by an admin operator.`,
		Example: `  meshward operator keygen
  meshward operator keygen --out ~/keys/meshward-oncall.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.output != "table" && f.output != "json" {
				return fmt.Errorf("--output %q: want table or json", f.output)
			}
			path := out
			if path == "" {
				p, err := defaultOperatorKeyPath()
				if err != nil {
					return err
				}
				path = p
			}
			seed := make([]byte, ed25519.SeedSize)
			if _, err := io.ReadFull(deps.rand, seed); err != nil {
				return fmt.Errorf("generate operator key: %w", err)
			}
			priv := ed25519.NewKeyFromSeed(seed)
			pub := priv.Public().(ed25519.PublicKey)
			if err := writeOperatorKey(path, priv); err != nil {
				return err
			}
			v := operatorKeyView{KeyID: intel.OperatorKeyID(pub), PublicKey: intel.FormatOperatorPublicKey(pub), File: path}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), v)
			}
			// The public key alone on stdout, so that it can be captured.
			fmt.Fprintln(cmd.OutOrStdout(), v.PublicKey)
			fmt.Fprintf(cmd.ErrOrStderr(), `wrote operator key %s to %s (mode 0600); keep it secret.
Register its public key (printed above) before signing with it:
  on the mesh's first node, in its configuration:
    consensus:
      bootstrap_operators: [%q]
  on a running mesh, by an admin operator:
    meshward operator add %q --role admin --name NAME
`, v.KeyID, path, v.PublicKey, v.PublicKey)
			return nil
		},
	}
	keygen.Flags().StringVar(&out, "out", "", "file to write the key to (default "+defaultOperatorKeyHint+")")

	var pubKey operatorFlags
	pubkey := &cobra.Command{
		Use:     "pubkey",
		Short:   "Print the public key of the operator key in use",
		Example: "  meshward operator pubkey\n  meshward operator pubkey --operator-key ~/keys/oncall.key -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.output != "table" && f.output != "json" {
				return fmt.Errorf("--output %q: want table or json", f.output)
			}
			priv, path, err := pubKey.load()
			if err != nil {
				return err
			}
			pub := priv.Public().(ed25519.PublicKey)
			v := operatorKeyView{KeyID: intel.OperatorKeyID(pub), PublicKey: intel.FormatOperatorPublicKey(pub), File: path}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintln(cmd.OutOrStdout(), v.PublicKey)
			return nil
		},
	}
	pubKey.register(pubkey.Flags())

	addSigner := &signer{deps: deps}
	var role, name string
	add := &cobra.Command{
		Use:   "add PUBLIC-KEY|FILE --role ROLE --name NAME",
		Short: "Register an operator key with the mesh (admin operator)",
		Long: `Register an operator's public key (as meshward operator keygen or pubkey print it)
with a role: responder (block, allow and revoke, with a bounded TTL) or
admin (everything).`,
		Example: `  meshward operator add "meshward-operator-ed25519 AAAA..." --role responder --name bob
  meshward operator add bob.pub --role admin --name bob`,
		Args: cobra.MinimumNArgs(1),
		RunE: signedCmd(&f, addSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			text := strings.Join(args, " ")
			if len(args) == 1 && !strings.HasPrefix(text, "meshward-operator-ed25519") {
				// A file holding the public key, as keygen's output saved.
				if b, err := os.ReadFile(text); err == nil {
					text = string(b)
				}
			}
			pub, err := intel.ParseOperatorPublicKey(text)
			if err != nil {
				return intel.OperatorCommand{}, fmt.Errorf("%w (give it as meshward operator pubkey prints it, or a file holding that line)", err)
			}
			r := intel.OperatorRole(strings.ToLower(role))
			if !r.Valid() {
				return intel.OperatorCommand{}, fmt.Errorf("--role %q: want responder or admin", role)
			}
			return intel.OperatorCommand{Op: intel.OpAddOperator, OperatorKey: pub, OperatorRole: r, OperatorName: name}, nil
		}, nil),
	}
	add.Flags().StringVar(&role, "role", "", "responder or admin (required)")
	add.Flags().StringVar(&name, "name", "", "who holds the key, shown in the list and the audit trail (required)")
	add.MarkFlagRequired("role")
	add.MarkFlagRequired("name")
	addSigner.key.register(add.Flags())

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the mesh's operator keys",
		Example: "  meshward operator list\n  meshward operator list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.OperatorState, error) { return c.Operator(cmd.Context()) }, printOperators)
		},
	}

	rmSigner := &signer{deps: deps}
	remove := &cobra.Command{
		Use:     "remove KEY-ID",
		Aliases: []string{"rm"},
		Short:   "Remove an operator key from the mesh (admin operator)",
		Example: "  meshward operator remove op:3f2a9c0d11e4b7a8",
		Args:    cobra.ExactArgs(1),
		RunE: signedCmd(&f, rmSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			return intel.OperatorCommand{Op: intel.OpRemoveOperator, OperatorKeyID: args[0]}, nil
		}, nil),
	}
	rmSigner.key.register(remove.Flags())

	cmd.AddCommand(keygen, pubkey, add, list, remove)
	return cmd
}

func printOperators(w io.Writer, st admin.OperatorState) {
	fmt.Fprintf(w, "Mesh: %s\n", orDash(st.Mesh))
	fmt.Fprintln(w, "KEY ID\tNAME\tROLE\tADDED\tADDED BY")
	for _, o := range st.Operators {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", o.KeyID, o.Name, o.Role, timeCell(o.AddedAt), orDash(o.AddedBy))
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
