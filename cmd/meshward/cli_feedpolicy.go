// The feed policy and warninglist verbs of the intel noun: `meshward intel
// feed-policy set|list|remove` and `meshward intel warninglist
// list|add|remove|check`. Changes are operator-signed commands; lists read
// the mesh's state from a node.
package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/warninglist"
)

func newFeedPolicyCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "feed-policy",
		Aliases: []string{"feed-policies"},
		Short:   "Turn a feed's indicator reports into mesh-wide blocks (admin operator)",
		Long: `A feed's entries travel as signed indicator reports and block nothing by
themselves. A feed policy, signed by an admin operator and held by the mesh,
turns the reports of one feed (their source) into mesh-wide blocks: those at
or above --min-confidence, of the --types given, valid now, published by one
of the --publisher nodes (none: any voter of the mesh), never a value on the
warninglist or below the safety floors. Each block lasts at most --ttl and
never past the report's own validity. The mesh checks all of it again when it
commits the block, from the signed report itself.`,
		Example: `  meshward intel feed-policy set feodo --source feodo-tracker --min-confidence 80 --types ipv4,cidr --ttl 24h
  meshward intel feed-policy list
  meshward intel feed-policy remove feodo`,
	}, &f)

	setSigner := &signer{deps: deps}
	var (
		source     string
		minConf    int
		types      []string
		ttl        time.Duration
		publishers []string
		disabled   bool
	)
	set := &cobra.Command{
		Use:   "set NAME --source FEED --types T,... --ttl D",
		Short: "Add or replace a feed policy",
		Example: `  meshward intel feed-policy set feodo --source feodo-tracker --min-confidence 80 --types ipv4,cidr --ttl 24h
  meshward intel feed-policy set urlhaus --source urlhaus --types domain --ttl 12h --publisher 12D3KooW...`,
		Args: cobra.ExactArgs(1),
		RunE: signedCmd(&f, setSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			secs, err := seconds("ttl", ttl)
			if err != nil {
				return intel.OperatorCommand{}, err
			}
			p := intel.FeedPolicy{Name: args[0], Source: source, MinConfidence: minConf, Action: intel.ActionBlock,
				TTLSeconds: secs, Publishers: publishers, Enabled: !disabled}
			for _, t := range types {
				p.Types = append(p.Types, intel.IndicatorType(strings.ToLower(strings.TrimSpace(t))))
			}
			if err := p.Validate(); err != nil {
				return intel.OperatorCommand{}, err
			}
			return intel.OperatorCommand{Op: intel.OpSetFeedPolicy, FeedPolicy: &p}, nil
		}, nil),
	}
	fs := set.Flags()
	fs.StringVar(&source, "source", "", "the feed's name, as its indicator reports carry it (required)")
	fs.IntVar(&minConf, "min-confidence", 80, "the least confidence (0..100) a report needs")
	fs.StringSliceVar(&types, "types", nil, "indicator types to block: ipv4, ipv6, cidr, domain (required)")
	fs.DurationVar(&ttl, "ttl", 24*time.Hour, "how long a block lasts at most (1s..720h)")
	fs.StringArrayVar(&publishers, "publisher", nil, "node ID allowed to publish the feed; repeat for more (default: the voters)")
	fs.BoolVar(&disabled, "disabled", false, "hold the policy but promote nothing")
	set.MarkFlagRequired("source")
	set.MarkFlagRequired("types")
	setSigner.key.register(fs)

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the mesh's feed policies",
		Example: "  meshward intel feed-policy list\n  meshward intel feed-policy list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]intel.FeedPolicy, error) {
				st, err := c.Operator(cmd.Context())
				return nonNilSlice(st.FeedPolicies), err
			}, printFeedPolicies)
		},
	}

	rmSigner := &signer{deps: deps}
	remove := &cobra.Command{
		Use:     "remove NAME",
		Aliases: []string{"rm"},
		Short:   "Remove a feed policy (the blocks it made stay until they expire or are revoked)",
		Example: "  meshward intel feed-policy remove feodo",
		Args:    cobra.ExactArgs(1),
		RunE: signedCmd(&f, rmSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			if err := intel.ValidFeedPolicyName(args[0]); err != nil {
				return intel.OperatorCommand{}, err
			}
			return intel.OperatorCommand{Op: intel.OpRemoveFeedPolicy, FeedPolicyName: args[0]}, nil
		}, nil),
	}
	rmSigner.key.register(remove.Flags())

	cmd.AddCommand(set, list, remove)
	return cmd
}

func printFeedPolicies(w io.Writer, ps []intel.FeedPolicy) {
	fmt.Fprintln(w, "NAME\tSOURCE\tMIN CONFIDENCE\tTYPES\tTTL\tPUBLISHERS\tENABLED")
	for _, p := range ps {
		types := make([]string, len(p.Types))
		for i, t := range p.Types {
			types[i] = string(t)
		}
		pubs := "voters"
		if len(p.Publishers) > 0 {
			short := make([]string, len(p.Publishers))
			for i, id := range p.Publishers {
				short[i] = shortNodeID(id)
			}
			pubs = strings.Join(short, ",")
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%t\n", p.Name, p.Source, p.MinConfidence, strings.Join(types, ","), p.TTL(), pubs, p.Enabled)
	}
}

func shortNodeID(id string) string {
	if len(id) > 12 {
		return "…" + id[len(id)-8:]
	}
	return id
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// warninglistCheck is the answer of meshward intel warninglist check.
type warninglistCheck struct {
	Value         string             `json:"value"`
	Indicator     intel.Indicator    `json:"indicator"`
	Warninglisted bool               `json:"warninglisted"`
	Entry         *warninglist.Entry `json:"entry,omitempty"`
}

func newWarninglistCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:   "warninglist",
		Short: "Values no feed policy ever blocks: list, extend, check",
		Long: `The warninglist holds values that no feed may turn into a mesh-wide block:
public resolvers, cloud metadata addresses, large CDN ranges, reserved names
and the most visited domains are built into every node; admin operators add
more to the mesh with signed commands. An address or range matches an entry
it overlaps; a domain matches an entry that is itself, a parent or a
subdomain. Operator blocks and corroborated blocks are not affected.`,
		Example: `  meshward intel warninglist check 8.8.8.8
  meshward intel warninglist add 198.51.100.0/24 --reason "partner CDN"
  meshward intel warninglist list --builtin`,
	}, &f)

	var builtin bool
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the entries operators added (with --builtin, the built-in ones too)",
		Example: "  meshward intel warninglist list\n  meshward intel warninglist list --builtin -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]warninglist.Entry, error) {
				st, err := c.Operator(cmd.Context())
				if err != nil {
					return nil, err
				}
				var out []warninglist.Entry
				if builtin {
					out = warninglist.Builtin().Entries()
				}
				return nonNilSlice(append(out, st.Warninglist...)), nil
			}, printWarninglist)
		},
	}
	list.Flags().BoolVar(&builtin, "builtin", false, "list the built-in entries as well")

	check := &cobra.Command{
		Use:   "check VALUE",
		Short: "Say whether a value is warninglisted, and by which entry",
		Long: `Check matches VALUE (an address, range, domain or URL) against the built-in
entries and those the mesh's operators added, as the mesh does before it
commits a feed block, and names the entry that vetoes it.`,
		Example: "  meshward intel warninglist check 8.8.8.8\n  meshward intel warninglist check mail.google.com -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ind, err := intel.ParseIndicator(args[0])
			if err != nil {
				return err
			}
			return run(cmd, &f, func(c *admin.Client) (warninglistCheck, error) {
				st, err := c.Operator(cmd.Context())
				if err != nil {
					return warninglistCheck{}, err
				}
				added, err := warninglist.New(st.Warninglist)
				if err != nil {
					return warninglistCheck{}, fmt.Errorf("the node's warninglist: %w", err)
				}
				r := warninglistCheck{Value: args[0], Indicator: ind}
				if e, ok := warninglist.Check(ind, warninglist.Builtin(), added); ok {
					r.Warninglisted, r.Entry = true, &e
				}
				return r, nil
			}, printWarninglistCheck)
		},
	}

	var reason string
	addSigner := &signer{deps: deps}
	add := &cobra.Command{
		Use:     "add VALUE",
		Short:   "Add an address, range or domain to the mesh's warninglist (admin operator)",
		Example: `  meshward intel warninglist add 198.51.100.0/24 --reason "partner CDN"`,
		Args:    cobra.ExactArgs(1),
		RunE: signedCmd(&f, addSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			ind, err := warninglistValue(args[0])
			if err != nil {
				return intel.OperatorCommand{}, err
			}
			return intel.OperatorCommand{Op: intel.OpWarninglistAdd, Indicator: &ind, Reason: reason}, nil
		}, nil),
	}
	add.Flags().StringVar(&reason, "reason", "", "why it must never be blocked by a feed")
	addSigner.key.register(add.Flags())

	rmSigner := &signer{deps: deps}
	remove := &cobra.Command{
		Use:     "remove VALUE",
		Aliases: []string{"rm"},
		Short:   "Remove an entry operators added (built-in entries stay)",
		Example: "  meshward intel warninglist remove 198.51.100.0/24",
		Args:    cobra.ExactArgs(1),
		RunE: signedCmd(&f, rmSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			ind, err := warninglistValue(args[0])
			if err != nil {
				return intel.OperatorCommand{}, err
			}
			return intel.OperatorCommand{Op: intel.OpWarninglistRemove, Indicator: &ind}, nil
		}, nil),
	}
	rmSigner.key.register(remove.Flags())

	cmd.AddCommand(list, check, add, remove)
	return cmd
}

// warninglistValue parses an address, range or domain for the warninglist.
func warninglistValue(s string) (intel.Indicator, error) {
	ind, err := intel.ParseIndicator(s)
	if err != nil {
		return intel.Indicator{}, err
	}
	switch ind.Type {
	case intel.IPv4, intel.IPv6, intel.CIDR, intel.Domain:
		return ind, nil
	}
	return intel.Indicator{}, fmt.Errorf("%q is a %s: the warninglist holds addresses, ranges and domains", s, ind.Type)
}

func printWarninglist(w io.Writer, es []warninglist.Entry) {
	fmt.Fprintln(w, "VALUE\tTYPE\tLIST\tREASON")
	for _, e := range es {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Indicator.Value, e.Indicator.Type, e.List, orDash(e.Reason))
	}
}

func printWarninglistCheck(w io.Writer, r warninglistCheck) {
	if !r.Warninglisted {
		fmt.Fprintf(w, "%s is not warninglisted\n", r.Value)
		return
	}
	fmt.Fprintf(w, "%s is warninglisted by %s (list %s: %s)\n", r.Value, r.Entry.Indicator.Value, r.Entry.List, orDash(r.Entry.Reason))
}
