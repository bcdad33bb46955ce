// The segmentation nouns: `meshward zone add|list|remove` and `meshward
// flow add|list|remove`. Changes are operator-signed commands (admin);
// lists read the mesh's state from a node.
package main

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

func newZoneCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "zone",
		Aliases: []string{"zones"},
		Short:   "Name the mesh's address ranges as zones, for flows and quarantine (admin operator)",
		Long: `A zone is a named set of address ranges, held by the mesh and set with a
command signed by an admin operator. Flows allow or deny traffic between
zones; a --default-deny zone drops what no allow flow admits into it; a
--management zone stays reachable from and to quarantined hosts. A zone may
let detection rules quarantine its hosts automatically (--auto-quarantine).
The mesh refuses a default-deny zone that holds a member's address, a
protected range, loopback or link-local space.`,
		Example: `  meshward zone add office --cidr 10.1.0.0/16 --auto-quarantine ssh-internal-bruteforce
  meshward zone add servers --cidr 10.2.0.0/16 --cidr 2001:db8:2::/48 --default-deny
  meshward zone list
  meshward zone remove office`,
	}, &f)

	addSigner := &signer{deps: deps}
	var (
		cidrs, sites, autoRules []string
		defaultDeny, mgmt       bool
		autoMinNodes            int
		autoTTL                 time.Duration
	)
	add := &cobra.Command{
		Use:     "add NAME --cidr CIDR [--cidr CIDR]...",
		Aliases: []string{"set"},
		Short:   "Add or replace a zone",
		Example: "  meshward zone add office --cidr 10.1.0.0/16 --site branch-1\n  meshward zone add mgmt --cidr 10.9.0.0/24 --management",
		Args:    cobra.ExactArgs(1),
		RunE: signedCmd(&f, addSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			z := intel.Zone{Name: args[0], Sites: sites, DefaultDeny: defaultDeny, Management: mgmt}
			for i, s := range cidrs {
				p, err := netip.ParsePrefix(strings.TrimSpace(s))
				if err != nil {
					return intel.OperatorCommand{}, fmt.Errorf("--cidr %q (#%d): %w", s, i+1, err)
				}
				z.CIDRs = append(z.CIDRs, p.Masked())
			}
			if len(autoRules) > 0 {
				secs, err := seconds("auto-quarantine-ttl", autoTTL)
				if err != nil {
					return intel.OperatorCommand{}, err
				}
				z.AutoQuarantine = &intel.AutoQuarantine{Rules: autoRules, MinNodes: autoMinNodes, MaxTTLSeconds: secs}
			} else if autoMinNodes != 0 || autoTTL != 0 {
				return intel.OperatorCommand{}, fmt.Errorf("--auto-quarantine-min-nodes and --auto-quarantine-ttl need --auto-quarantine")
			}
			if err := z.Validate(); err != nil {
				return intel.OperatorCommand{}, err
			}
			return intel.OperatorCommand{Op: intel.OpSetZone, Zone: &z}, nil
		}, nil),
	}
	fs := add.Flags()
	fs.StringArrayVar(&cidrs, "cidr", nil, "an address range of the zone (repeat for more; required)")
	fs.StringArrayVar(&sites, "site", nil, "limit the zone to this member site (repeat for more)")
	fs.BoolVar(&defaultDeny, "default-deny", false, "drop traffic into the zone that no allow flow admits")
	fs.BoolVar(&mgmt, "management", false, "keep the zone reachable from and to quarantined hosts")
	fs.StringArrayVar(&autoRules, "auto-quarantine", nil, "a detection rule whose sightings of a host of the zone quarantine it (repeat for more)")
	fs.IntVar(&autoMinNodes, "auto-quarantine-min-nodes", 0, "members that must have signed such a sighting (default 1)")
	fs.DurationVar(&autoTTL, "auto-quarantine-ttl", 0, "how long an automatic quarantine lasts at most (default 1h)")
	add.MarkFlagRequired("cidr")
	addSigner.key.register(fs)

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the mesh's zones",
		Example: "  meshward zone list\n  meshward zone list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]intel.Zone, error) {
				zs, err := c.Zones(cmd.Context())
				return nonNilSlice(zs), err
			}, printZones)
		},
	}

	rmSigner := &signer{deps: deps}
	remove := &cobra.Command{
		Use:     "remove NAME",
		Aliases: []string{"rm"},
		Short:   "Remove a zone that no flow names",
		Example: "  meshward zone remove office",
		Args:    cobra.ExactArgs(1),
		RunE: signedCmd(&f, rmSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			if err := intel.ValidSegmentName("zone name", args[0]); err != nil {
				return intel.OperatorCommand{}, err
			}
			return intel.OperatorCommand{Op: intel.OpRemoveZone, ZoneName: args[0]}, nil
		}, nil),
	}
	rmSigner.key.register(remove.Flags())

	cmd.AddCommand(add, list, remove)
	return cmd
}

func printZones(w io.Writer, zs []intel.Zone) {
	fmt.Fprintln(w, "NAME\tCIDRS\tSITES\tDEFAULT DENY\tMANAGEMENT\tAUTO QUARANTINE")
	for _, z := range zs {
		cidrs := make([]string, len(z.CIDRs))
		for i, p := range z.CIDRs {
			cidrs[i] = p.String()
		}
		auto := "-"
		if a := z.AutoQuarantine; a != nil {
			auto = fmt.Sprintf("%s (%d node(s), %s)", strings.Join(a.Rules, ","), a.Nodes(), a.MaxTTL())
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%t\t%s\n", z.Name, strings.Join(cidrs, ","), orDash(strings.Join(z.Sites, ",")), z.DefaultDeny, z.Management, auto)
	}
}

func newFlowCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:     "flow",
		Aliases: []string{"flows"},
		Short:   "Allow or deny traffic between zones (admin operator)",
		Long: `A flow allows or denies traffic from one zone to another ("*" for every
address), by protocol and destination ports. Flows are evaluated by
descending --priority, deny before allow on a tie; the first that matches
decides. An --observe flow only counts what it would drop. The mesh refuses a
flow naming an unknown zone, a deny flow through a zone that holds a
member's address or a protected range, and a flow that matches exactly what
another matches at the same priority with the opposite action. A flow that
an earlier one covers entirely is accepted, with a warning: it never decides
anything.`,
		Example: `  meshward flow add office-web --from office --to servers --proto tcp --ports 443,8000-8080 --action allow --priority 10
  meshward flow add no-smb --from '*' --to office --proto tcp --ports 445 --action deny --priority 20 --observe
  meshward flow list
  meshward flow remove no-smb`,
	}, &f)

	addSigner := &signer{deps: deps}
	var (
		from, to, proto, ports, action string
		priority                       int
		observe                        bool
	)
	add := &cobra.Command{
		Use:     "add NAME --from ZONE --to ZONE --action allow|deny",
		Aliases: []string{"set"},
		Short:   "Add or replace a flow",
		Example: "  meshward flow add office-db --from office --to servers --proto tcp --ports 5432 --action deny",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := intel.Flow{Name: args[0], From: from, To: to, Proto: strings.ToLower(proto), Action: intel.FlowAction(strings.ToLower(action)), Priority: priority}
			if observe {
				fl.Mode = intel.FlowObserve
			}
			var err error
			if fl.Ports, err = parsePorts(ports); err != nil {
				return err
			}
			if err := fl.Validate(); err != nil {
				return err
			}
			oc := intel.OperatorCommand{Op: intel.OpSetFlow, Flow: &fl}
			return run(cmd, &f, func(c *admin.Client) (admin.OperatorResult, error) { return addSigner.submit(cmd.Context(), c, oc) }, printFlowAdded)
		},
	}
	fs := add.Flags()
	fs.StringVar(&from, "from", "", `the source zone, or "*" (required)`)
	fs.StringVar(&to, "to", "", `the destination zone, or "*" (required)`)
	fs.StringVar(&proto, "proto", intel.ProtoAny, "any, tcp, udp or icmp")
	fs.StringVar(&ports, "ports", "", "destination ports and ranges, e.g. 443,8000-8080 (tcp or udp; none: every port)")
	fs.StringVar(&action, "action", "", "allow or deny (required)")
	fs.IntVar(&priority, "priority", 0, "0..1000; higher is evaluated first")
	fs.BoolVar(&observe, "observe", false, "count what the flow would drop without dropping it")
	add.MarkFlagRequired("from")
	add.MarkFlagRequired("to")
	add.MarkFlagRequired("action")
	addSigner.key.register(fs)

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the mesh's flows in evaluation order, marking shadowed ones",
		Example: "  meshward flow list\n  meshward flow list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.FlowList, error) {
				fl, err := c.Flows(cmd.Context())
				fl.Flows, fl.Warnings = nonNilSlice(fl.Flows), nonNilSlice(fl.Warnings)
				return fl, err
			}, printFlows)
		},
	}

	rmSigner := &signer{deps: deps}
	remove := &cobra.Command{
		Use:     "remove NAME",
		Aliases: []string{"rm"},
		Short:   "Remove a flow",
		Example: "  meshward flow remove no-smb",
		Args:    cobra.ExactArgs(1),
		RunE: signedCmd(&f, rmSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			if err := intel.ValidSegmentName("flow name", args[0]); err != nil {
				return intel.OperatorCommand{}, err
			}
			return intel.OperatorCommand{Op: intel.OpRemoveFlow, FlowName: args[0]}, nil
		}, nil),
	}
	rmSigner.key.register(remove.Flags())

	cmd.AddCommand(add, list, remove)
	return cmd
}

// parsePorts reads "443,8000-8080" as port ranges; "" is none.
func parsePorts(s string) ([]intel.PortRange, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []intel.PortRange
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("--ports %q: item %d %q: want a port or a range like 8000-8080", s, i+1, part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, fmt.Errorf("--ports %q: item %d %q: want a port or a range like 8000-8080", s, i+1, part)
			}
		}
		out = append(out, intel.PortRange{From: uint16(a), To: uint16(b)})
	}
	return out, nil
}

func formatPorts(rs []intel.PortRange) string {
	if len(rs) == 0 {
		return "*"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.Itoa(int(r.From))
		if r.To != r.From {
			parts[i] += "-" + strconv.Itoa(int(r.To))
		}
	}
	return strings.Join(parts, ",")
}

func printFlows(w io.Writer, fl admin.FlowList) {
	shadow := map[string]string{}
	for _, x := range fl.Warnings {
		shadow[x.Flow] = x.ShadowedBy
	}
	fmt.Fprintln(w, "NAME\tFROM\tTO\tPROTO\tPORTS\tACTION\tPRIORITY\tMODE\tNOTE")
	for _, f := range fl.Flows {
		mode := string(f.Mode)
		if mode == "" {
			mode = string(intel.FlowEnforce)
		}
		note := "-"
		if by, ok := shadow[f.Name]; ok {
			note = "shadowed by " + by
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", f.Name, f.From, f.To, f.Proto, formatPorts(f.Ports), f.Action, f.Priority, mode, note)
	}
}

func printFlowAdded(w io.Writer, r admin.OperatorResult) {
	printOperatorResult(w, r)
	for _, x := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
}
