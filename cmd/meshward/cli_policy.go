package main

import (
	"bufio"
	"encoding/json"
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
	var limit, pageSize int
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the policies in force: mesh-wide, then local decisions",
		Long: `List the policies in force: mesh-wide ones in ID order, then this node's
local decisions. The node answers a page at a time (--page-size); the
list is printed as the pages arrive, so that a mesh holding many
policies is listed without holding them all. --limit stops after that
many. With -o json the output is one JSON array.`,
		Example: "  meshward policy list\n  meshward policy list --scope local -o json\n  meshward policy list --limit 50",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return listPolicies(cmd, &f, scope, limit, pageSize)
		},
	}
	list.Flags().StringVar(&scope, "scope", "", "only mesh or local policies")
	list.Flags().IntVar(&limit, "limit", 0, "stop after this many policies (0: all)")
	list.Flags().IntVar(&pageSize, "page-size", defaultPageSize, "policies per request to the node (1 to 10000)")

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
	var reason, typ, file string
	var local, wide bool
	var parallel int
	s := &signer{deps: deps}
	cmd := &cobra.Command{
		Use:  string(action) + " INDICATOR | --file FILE",
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (file == "") == (len(args) == 0) {
				return errors.New("name one indicator, or a file of them with --file")
			}
			if file != "" {
				if local {
					return errors.New("--file is for mesh-wide policies, not --local blocks")
				}
				if parallel < 1 || parallel > 16 {
					return fmt.Errorf("--parallel %d: want 1 to 16", parallel)
				}
				secs, err := seconds("ttl", ttl)
				if err != nil {
					return err
				}
				op := intel.OpBlockBulk
				if action == intel.ActionAllow {
					op = intel.OpAllowBulk
				}
				err = runBulk(cmd, f, s, file, typ, intel.OperatorCommand{Op: op, TTLSeconds: secs, Reason: reason, Wide: wide}, parallel)
				return wideHint(err, wide)
			}
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
			return wideHint(err, wide)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "a file of indicators, one per line ('#' comments; - for stdin), committed as bulk commands of up to 2000")
	cmd.Flags().IntVar(&parallel, "parallel", defaultBulkParallel, "with --file: how many bulk commands are in flight at once")
	if action == intel.ActionBlock {
		cmd.Short = "Block an indicator mesh-wide (signed by an operator key) or on this node only (--local)"
		cmd.Long = `Block an indicator (an address, CIDR, domain, URL or SHA-256 hash) on every
node: the command is signed with your operator key and committed through
consensus (a responder operator's block must expire within 7 days; a block
wider than the safety floors needs --wide and an admin operator). A block
that would cover a protected range or an allowed indicator is refused.
With --local the block holds on this node only, needs no operator key,
and expires (default 1h).`
		cmd.Long += `

With --file, every indicator of a file (one per line; blank lines and
'#' comments are skipped, duplicates dropped) is blocked with the same
--ttl, --reason and --wide: the whole file is checked first (a bad line
is named by file and line, and nothing is submitted), then committed as
block_bulk commands of up to 2000 indicators, each whole or not at all.
Each command's outcome is reported; a refused one names the indicator
and its line.`
		cmd.Example = `  meshward policy block 203.0.113.7 --ttl 24h --reason "ssh brute force"
  meshward policy block 198.51.100.0/24 --operator-key ~/keys/oncall.key
  meshward policy block 203.0.113.9 --local --ttl 30m
  meshward policy block --file feed.txt --ttl 72h --reason "abuse feed"`
		cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the block lasts; 0 means until revoked (admin operators only; local blocks default to 1h and must expire)")
		cmd.Flags().BoolVar(&local, "local", false, "block on this node only, as a local decision (unsigned)")
	} else {
		cmd.Short = "Allow an indicator mesh-wide: no block may cover it (signed by an operator key)"
		cmd.Long = `Allow an indicator on every node: no block may cover it. The command is
signed with your operator key and committed through consensus. With
--file, every indicator of a file is allowed as allow_bulk commands (see
meshward policy block --help).`
		cmd.Example = `  meshward policy allow 192.0.2.10 --reason "partner scanner"
  meshward policy allow 192.0.2.0/24 --ttl 720h
  meshward policy allow --file partners.txt --reason "partners"`
		cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the allow lasts; 0 means until revoked (admin operators only)")
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail and other operators")
	cmd.Flags().StringVar(&typ, "type", "", "indicator type (ipv4, ipv6, cidr, domain, url, sha256); guessed when empty")
	cmd.Flags().BoolVar(&wide, "wide", false, "pass the breadth floor (a range wider than the mesh's floors; admin operators only)")
	s.key.register(cmd.Flags())
	return cmd
}

// wideHint adds to a too_broad refusal how to pass the floor.
func wideHint(err error, wide bool) error {
	if err != nil && !wide && strings.Contains(err.Error(), "too_broad") {
		return fmt.Errorf("%w; to pass the floor, add --wide (an admin operator's key is needed)", err)
	}
	return err
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

const policyHeader = "ID\tSCOPE\tACTION\tINDICATOR\tEXPIRES\tAUTHOR\tREASON"

func printPolicies(w io.Writer, ps []admin.PolicyView) {
	fmt.Fprintln(w, policyHeader)
	for _, p := range ps {
		printPolicyRow(w, p)
	}
}

func printPolicyRow(w io.Writer, p admin.PolicyView) {
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Scope, p.Action, p.Indicator.Value,
		expiresCell(p.ExpiresAt), short(p.Author), orDash(truncate(p.Reason, 48)))
}

// defaultPageSize is how many policies `policy list` asks for at a time.
const defaultPageSize = 500

// listPolicies prints the policies in force page by page as they arrive:
// a table (its columns aligned within each page) or one JSON array,
// stopping after limit policies when limit is positive.
func listPolicies(cmd *cobra.Command, f *clientFlags, scope string, limit, pageSize int) error {
	if limit < 0 {
		return fmt.Errorf("--limit %d: want 0 (all) or more", limit)
	}
	if pageSize < 1 || pageSize > 10000 {
		return fmt.Errorf("--page-size %d: want 1 to 10000", pageSize)
	}
	if limit > 0 {
		pageSize = min(pageSize, limit)
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	out := cmd.OutOrStdout()
	var (
		n   int
		tw  = newTable(out)
		bw  = bufio.NewWriter(out)
		put func(admin.PolicyView) error
	)
	if f.output == "json" {
		// The same bytes as encoding the whole list with two-space
		// indentation, written an element at a time.
		put = func(p admin.PolicyView) error {
			b, err := json.MarshalIndent(p, "  ", "  ")
			if err != nil {
				return fmt.Errorf("encode policy %s: %w", p.ID, err)
			}
			sep := ",\n  "
			if n == 0 {
				sep = "[\n  "
			}
			bw.WriteString(sep)
			bw.Write(b)
			return nil
		}
	} else {
		fmt.Fprintln(tw, policyHeader)
		put = func(p admin.PolicyView) error {
			printPolicyRow(tw, p)
			return nil
		}
	}
	flush := func() error {
		if err := tw.Flush(); err != nil {
			return err
		}
		return bw.Flush()
	}
	err = c.EachPolicy(cmd.Context(), scope, pageSize, func(p admin.PolicyView) error {
		if err := put(p); err != nil {
			return err
		}
		n++
		if limit > 0 && n >= limit {
			return admin.ErrStop
		}
		if n%pageSize == 0 { // a page is printed: let it out
			return flush()
		}
		return nil
	})
	if err != nil {
		flush()
		return apiErr(err)
	}
	if f.output == "json" {
		if n == 0 {
			bw.WriteString("[]\n")
		} else {
			bw.WriteString("\n]\n")
		}
	}
	return flush()
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
