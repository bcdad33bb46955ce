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

func newPolicyCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:   "policy",
		Short: "List, show, block, allow and revoke policies",
		Long: `Mesh-wide policies are committed through consensus and enforced on every
node; changing one is an operator command, signed with your operator key
(see meshward operator). Local decisions are blocks of this node only,
bounded in time, and need no operator key.`,
		Example: `  meshward policy list
  meshward policy block 203.0.113.7 --ttl 24h --reason "credential stuffing"
  meshward policy revoke 3f2a9c0d11e4b7a8`,
	}, &f)

	var scope string
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the policies in force: mesh-wide, then local decisions",
		Example: "  meshward policy list\n  meshward policy list --scope local -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.PolicyView, error) { return c.Policies(cmd.Context(), scope) }, printPolicies)
		},
	}
	list.Flags().StringVar(&scope, "scope", "", "only mesh or local policies")

	var showScope string
	show := &cobra.Command{
		Use:     "show POLICY-ID",
		Short:   "Show one policy with its evidence",
		Example: "  meshward policy show 3f2a9c0d11e4b7a8\n  meshward policy show 3f2a9c0d11e4b7a8 --scope local",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.PolicyView, error) { return c.Policy(cmd.Context(), args[0], showScope) }, printPolicy)
		},
	}
	show.Flags().StringVar(&showScope, "scope", "", "mesh or local, when both have this ID (default: mesh first)")

	cmd.AddCommand(list, show, newPolicyChangeCmd(&f, deps, intel.ActionBlock), newPolicyChangeCmd(&f, deps, intel.ActionAllow), newPolicyRevokeCmd(&f, deps))
	return cmd
}

func newPolicyChangeCmd(f *clientFlags, deps cliDeps, action intel.Action) *cobra.Command {
	var ttl time.Duration
	var reason, typ string
	var local, wide bool
	s := &signer{deps: deps}
	cmd := &cobra.Command{
		Use:  string(action) + " INDICATOR",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if local {
				if wide {
					return errors.New("--wide is for mesh-wide policies, not --local blocks")
				}
				req := admin.PolicyRequest{Action: action, Indicator: args[0], Type: typ, TTL: ttl.String(), Reason: reason}
				if !cmd.Flags().Changed("ttl") {
					req.TTL = "1h"
				}
				return run(cmd, f, func(c *admin.Client) (admin.PolicyView, error) { return c.LocalBlock(cmd.Context(), req) }, printPolicy)
			}
			err := signedCmd(f, s, func(*cobra.Command, []string) (intel.OperatorCommand, error) {
				ind, err := parseIndicatorArg(args[0], typ)
				if err != nil {
					return intel.OperatorCommand{}, err
				}
				secs, err := seconds("ttl", ttl)
				if err != nil {
					return intel.OperatorCommand{}, err
				}
				return intel.OperatorCommand{Op: intel.OperatorOp(action), Indicator: &ind, TTLSeconds: secs, Reason: reason, Wide: wide}, nil
			}, nil)(cmd, args)
			if err != nil && !wide && strings.Contains(err.Error(), "too_broad") {
				return fmt.Errorf("%w; to pass the floor, add --wide (an admin operator's key is needed)", err)
			}
			return err
		},
	}
	if action == intel.ActionBlock {
		cmd.Short = "Block an indicator mesh-wide (signed by an operator key) or on this node only (--local)"
		cmd.Long = `Block an indicator (an address, CIDR, domain, URL or SHA-256 hash) on every
node: the command is signed with your operator key and committed through
consensus (a responder operator's block must expire within 7 days; a block
wider than the safety floors needs --wide and an admin operator). A block
that would cover a protected range or an allowed indicator is refused.
With --local the block holds on this node only, needs no operator key,
and expires (default 1h).`
		cmd.Example = `  meshward policy block 203.0.113.7 --ttl 24h --reason "ssh brute force"
  meshward policy block 198.51.100.0/24 --operator-key ~/keys/oncall.key
  meshward policy block 203.0.113.9 --local --ttl 30m`
		cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the block lasts; 0 means until revoked (admin operators only; local blocks default to 1h and must expire)")
		cmd.Flags().BoolVar(&local, "local", false, "block on this node only, as a local decision (unsigned)")
	} else {
		cmd.Short = "Allow an indicator mesh-wide: no block may cover it (signed by an operator key)"
		cmd.Example = `  meshward policy allow 192.0.2.10 --reason "partner scanner"
  meshward policy allow 192.0.2.0/24 --ttl 720h`
		cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the allow lasts; 0 means until revoked (admin operators only)")
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail and other operators")
	cmd.Flags().StringVar(&typ, "type", "", "indicator type (ipv4, ipv6, cidr, domain, url, sha256); guessed when empty")
	cmd.Flags().BoolVar(&wide, "wide", false, "pass the breadth floor (a range wider than the mesh's floors; admin operators only)")
	s.key.register(cmd.Flags())
	return cmd
}

// parseIndicatorArg reads an indicator as an operator writes it; typ, when
// set, forces its type.
func parseIndicatorArg(value, typ string) (intel.Indicator, error) {
	if typ != "" {
		return intel.NewIndicator(intel.IndicatorType(strings.ToLower(typ)), strings.TrimSpace(value))
	}
	return intel.ParseIndicator(value)
}

func newPolicyRevokeCmd(f *clientFlags, deps cliDeps) *cobra.Command {
	var local bool
	s := &signer{deps: deps}
	cmd := &cobra.Command{
		Use:   "revoke POLICY-ID",
		Short: "Revoke a mesh-wide policy (signed by an operator key) or delete a local decision (--local)",
		Example: `  meshward policy revoke 3f2a9c0d11e4b7a8
  meshward policy revoke 3f2a9c0d11e4b7a8 --local`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if local {
				return run(cmd, f, func(c *admin.Client) (map[string]string, error) {
					return map[string]string{"deleted": args[0]}, c.DeleteLocal(cmd.Context(), args[0])
				}, func(w io.Writer, _ map[string]string) { fmt.Fprintf(w, "deleted local decision %s\n", args[0]) })
			}
			return signedCmd(f, s, func(*cobra.Command, []string) (intel.OperatorCommand, error) {
				return intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: args[0]}, nil
			}, nil)(cmd, args)
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "delete this node's local decision instead (unsigned)")
	s.key.register(cmd.Flags())
	return cmd
}

func printPolicies(w io.Writer, ps []admin.PolicyView) {
	fmt.Fprintln(w, "ID\tSCOPE\tACTION\tINDICATOR\tEXPIRES\tAUTHOR\tREASON")
	for _, p := range ps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Scope, p.Action, p.Indicator.Value,
			expiresCell(p.ExpiresAt), short(p.Author), orDash(truncate(p.Reason, 48)))
	}
}

func printPolicy(w io.Writer, p admin.PolicyView) {
	fmt.Fprintf(w, "ID:\t%s\n", p.ID)
	fmt.Fprintf(w, "Scope:\t%s\n", p.Scope)
	fmt.Fprintf(w, "Action:\t%s\n", p.Action)
	fmt.Fprintf(w, "Indicator:\t%s (%s)\n", p.Indicator.Value, p.Indicator.Type)
	fmt.Fprintf(w, "Reason:\t%s\n", orDash(p.Reason))
	fmt.Fprintf(w, "Author:\t%s\n", p.Author)
	fmt.Fprintf(w, "Created:\t%s\n", timeCell(p.CreatedAt))
	fmt.Fprintf(w, "Expires:\t%s\n", expiresCell(p.ExpiresAt))
	for _, e := range p.Evidence {
		fmt.Fprintf(w, "Evidence:\t%s seq %d (%s) seen %s\n", e.Origin, e.Seq, orDash(e.Detector), timeCell(e.Seen))
	}
}
