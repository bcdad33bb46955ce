package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

func newPolicyCmd() *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:   "policy",
		Short: "List, show, block, allow and revoke policies",
		Long: `Mesh-wide policies are committed through consensus and enforced on every
node; local decisions are blocks of this node only, bounded in time.`,
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

	cmd.AddCommand(list, show, newPolicyChangeCmd(&f, intel.ActionBlock), newPolicyChangeCmd(&f, intel.ActionAllow), newPolicyRevokeCmd(&f))
	return cmd
}

func newPolicyChangeCmd(f *clientFlags, action intel.Action) *cobra.Command {
	var ttl, reason, typ string
	var local bool
	cmd := &cobra.Command{
		Use:  string(action) + " INDICATOR",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := admin.PolicyRequest{Action: action, Indicator: args[0], Type: typ, TTL: ttl, Reason: reason}
			return run(cmd, f, func(c *admin.Client) (admin.PolicyView, error) {
				if local {
					if req.TTL == "" {
						req.TTL = "1h"
					}
					return c.LocalBlock(cmd.Context(), req)
				}
				return c.Propose(cmd.Context(), req)
			}, printPolicy)
		},
	}
	if action == intel.ActionBlock {
		cmd.Short = "Block an indicator mesh-wide (admin) or on this node only (--local, responder)"
		cmd.Long = `Block an indicator (an address, CIDR, domain, URL or SHA-256 hash) on every
node, through consensus, or with --local on this node only. A block that
would cover a protected range or an allowed indicator is refused.`
		cmd.Example = `  meshward policy block 203.0.113.7 --ttl 24h --reason "ssh brute force"
  meshward policy block 198.51.100.0/24
  meshward policy block 203.0.113.9 --local --ttl 30m`
		cmd.Flags().StringVar(&ttl, "ttl", "24h", "how long the block lasts; 0 means until revoked (local blocks default to 1h and must expire)")
		cmd.Flags().BoolVar(&local, "local", false, "block on this node only, as a local decision")
		cmd.PreRun = func(cmd *cobra.Command, _ []string) {
			if local && !cmd.Flags().Changed("ttl") {
				ttl = ""
			}
		}
	} else {
		cmd.Short = "Allow an indicator mesh-wide: no block may cover it (admin)"
		cmd.Example = `  meshward policy allow 192.0.2.10 --reason "partner scanner"
  meshward policy allow 192.0.2.0/24 --ttl 720h`
		cmd.Flags().StringVar(&ttl, "ttl", "0", "how long the allow lasts; 0 means until revoked")
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail and other operators")
	cmd.Flags().StringVar(&typ, "type", "", "indicator type (ipv4, ipv6, cidr, domain, url, sha256); guessed when empty")
	return cmd
}

func newPolicyRevokeCmd(f *clientFlags) *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "revoke POLICY-ID",
		Short: "Revoke a mesh-wide policy (admin) or delete a local decision (--local, responder)",
		Example: `  meshward policy revoke 3f2a9c0d11e4b7a8
  meshward policy revoke 3f2a9c0d11e4b7a8 --local`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, f, func(c *admin.Client) (map[string]string, error) {
				if local {
					return map[string]string{"deleted": args[0]}, c.DeleteLocal(cmd.Context(), args[0])
				}
				return map[string]string{"revoked": args[0]}, c.Revoke(cmd.Context(), args[0])
			}, func(w io.Writer, m map[string]string) {
				for k, v := range m {
					fmt.Fprintf(w, "%s policy %s\n", k, v)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "delete this node's local decision instead")
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
