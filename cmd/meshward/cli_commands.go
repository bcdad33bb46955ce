package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
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

func newMembersCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "members",
		Short:   "List or remove the nodes admitted to the mesh",
		Example: "  meshward members list\n  meshward members remove 12D3KooW...",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.register(cmd)
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the roster: every admitted node, voter or not",
		Example: "  meshward members list\n  meshward members list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.Member, error) { return c.Members(cmd.Context()) },
				func(w io.Writer, ms []admin.Member) {
					fmt.Fprintln(w, "ID\tSITE\tVOTER\tLEADER\tCONNECTED\tADMITTED")
					for _, m := range ms {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, orDash(m.Site), yesNo(m.Voter), yesNo(m.Leader), yesNo(m.Connected), timeCell(m.AdmittedAt))
					}
				})
		},
	}
	remove := &cobra.Command{
		Use:     "remove NODE-ID",
		Aliases: []string{"rm"},
		Short:   "Remove a node from the mesh (admin)",
		Long: `Remove a node from the roster and the Raft configuration, through consensus.
Its envelopes are no longer accepted; it must join again with a join token.`,
		Example: "  meshward members remove 12D3KooWAbc...",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (map[string]string, error) {
				return map[string]string{"removed": args[0]}, c.RemoveMember(cmd.Context(), args[0])
			}, func(w io.Writer, _ map[string]string) { fmt.Fprintf(w, "removed member %s\n", args[0]) })
		},
	}
	cmd.AddCommand(list, remove)
	return cmd
}

func newPeersCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "peers",
		Short:   "List the libp2p peers this node is connected to",
		Example: "  meshward peers\n  meshward peers -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.Peer, error) { return c.Peers(cmd.Context()) },
				func(w io.Writer, ps []admin.Peer) {
					fmt.Fprintln(w, "ID\tSITE\tMEMBER\tADDRESS")
					for _, p := range ps {
						addr := "-"
						if len(p.Addrs) > 0 {
							addr = p.Addrs[0]
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.ID, orDash(p.Site), yesNo(p.Member), addr)
					}
				})
		},
	}
	f.register(cmd)
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

func newPolicyCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "List, show, block, allow and revoke policies",
		Long: `Mesh-wide policies are committed through consensus and enforced on every
node; local decisions are blocks of this node only, bounded in time.`,
		Example: `  meshward policy list
  meshward policy block 203.0.113.7 --ttl 24h --reason "credential stuffing"
  meshward policy revoke 3f2a9c0d11e4b7a8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.register(cmd)

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

func printIOCs(w io.Writer, iocs []admin.IOC) {
	fmt.Fprintln(w, "INDICATOR\tTYPE\tSIGHTINGS\tNODES\tLAST SEEN\tDETECTORS\tPOLICIES")
	for _, i := range iocs {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", truncate(i.Indicator.Value, 64), i.Indicator.Type, i.Sightings, i.Origins,
			timeCell(i.LastSeen), orDash(strings.Join(i.Detectors, ",")), orDash(strings.Join(i.Policies, ",")))
	}
}

func newIOCsCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "iocs",
		Aliases: []string{"ioc", "indicators"},
		Short:   "List, show, search and share indicators of compromise",
		Example: "  meshward iocs list\n  meshward iocs show 203.0.113.7\n  meshward iocs search example.com\n  meshward iocs publish 198.51.100.23 --confidence 80 --label scanner\n  meshward iocs reports --active",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.register(cmd)
	var typ string
	var limit int
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List indicators from the most recent sightings, most recently seen first",
		Example: "  meshward iocs list\n  meshward iocs list --type ipv6 --limit 20",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.IOC, error) {
				return c.IOCs(cmd.Context(), admin.IOCQuery{Type: typ, Limit: limit})
			}, printIOCs)
		},
	}
	search := &cobra.Command{
		Use:     "search TEXT",
		Short:   "List indicators whose value contains TEXT (case-insensitive)",
		Example: "  meshward iocs search 203.0.113.\n  meshward iocs search evil --type domain",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.IOC, error) {
				return c.IOCs(cmd.Context(), admin.IOCQuery{Text: args[0], Type: typ, Limit: limit})
			}, printIOCs)
		},
	}
	for _, c := range []*cobra.Command{list, search} {
		c.Flags().StringVar(&typ, "type", "", "only this indicator type (ipv4, ipv6, cidr, domain, url, sha256)")
		c.Flags().IntVar(&limit, "limit", 100, "at most this many indicators")
	}
	var showType string
	show := &cobra.Command{
		Use:     "show INDICATOR",
		Short:   "Show one indicator: its sightings, the policies that cover it and its reports",
		Example: "  meshward iocs show 203.0.113.7\n  meshward iocs show https://evil.example/payload -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.IOCDetail, error) {
				return c.IOC(cmd.Context(), args[0], showType)
			}, func(w io.Writer, d admin.IOCDetail) {
				fmt.Fprintf(w, "Indicator:\t%s (%s)\n", d.Indicator.Value, d.Indicator.Type)
				fmt.Fprintf(w, "Sightings:\t%d from %d nodes\n", d.Sightings, d.Origins)
				fmt.Fprintf(w, "First seen:\t%s\n", timeCell(d.FirstSeen))
				fmt.Fprintf(w, "Last seen:\t%s\n", timeCell(d.LastSeen))
				fmt.Fprintf(w, "Detectors:\t%s\n", orDash(strings.Join(d.Detectors, ", ")))
				fmt.Fprintln(w)
				if len(d.PolicyList) > 0 {
					printPolicies(w, d.PolicyList)
					fmt.Fprintln(w)
				}
				printSightings(w, d.SightingList)
				if len(d.ReportList) > 0 {
					fmt.Fprintln(w)
					printReports(w, d.ReportList)
				}
			})
		},
	}
	show.Flags().StringVar(&showType, "type", "", "indicator type; guessed when empty")
	cmd.AddCommand(list, show, search)
	cmd.AddCommand(newReportCmds(&f)...)
	return cmd
}

func printSightings(w io.Writer, ss []admin.Sighting) {
	fmt.Fprintln(w, "RECEIVED\tORIGIN\tSITE\tINDICATOR\tDETECTOR\tCOUNT\tCONFIDENCE\tLAST SEEN")
	for _, s := range ss {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", timeCell(s.Received), short(s.Origin), orDash(s.Sighting.Site),
			truncate(s.Sighting.Indicator.Value, 64), s.Sighting.Detector, s.Sighting.Count, s.Sighting.Confidence, timeCell(s.Sighting.LastSeen))
	}
}

// newSightingListCmd makes `NOUN list` for sightings and detections.
func newSightingListCmd(noun, short, long string, fetch func(*admin.Client, context.Context, int) ([]admin.Sighting, error)) *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     noun,
		Short:   short,
		Long:    long,
		Example: fmt.Sprintf("  meshward %s list\n  meshward %s list --limit 20 -o json", noun, noun),
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.register(cmd)
	var limit int
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   short + ", newest first",
		Example: fmt.Sprintf("  meshward %s list --limit 50", noun),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.Sighting, error) { return fetch(c, cmd.Context(), limit) }, printSightings)
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "at most this many (1 to 10000)")
	cmd.AddCommand(list)
	return cmd
}

func newSightingsCmd() *cobra.Command {
	return newSightingListCmd("sightings", "List the sightings this node holds, from every node",
		"List the signed sightings this node has stored: its own and those gossiped by other nodes.",
		(*admin.Client).Sightings)
}

func printDetections(w io.Writer, ds []admin.Detection) {
	fmt.Fprintln(w, "ID\tRECEIVED\tINDICATOR\tDETECTOR\tCOUNT\tCONFIDENCE\tLAST SEEN\tACKNOWLEDGED BY")
	for _, d := range ds {
		ack := "-"
		if d.Ack != nil {
			ack = d.Ack.By
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.ID, timeCell(d.Received), truncate(d.Sighting.Sighting.Indicator.Value, 64),
			d.Sighting.Sighting.Detector, d.Sighting.Sighting.Count, d.Sighting.Sighting.Confidence, timeCell(d.Sighting.Sighting.LastSeen), ack)
	}
}

func printDetection(w io.Writer, d admin.Detection) {
	fmt.Fprintf(w, "ID:\t%s\n", d.ID)
	fmt.Fprintf(w, "Indicator:\t%s (%s)\n", d.Sighting.Sighting.Indicator.Value, d.Sighting.Sighting.Indicator.Type)
	fmt.Fprintf(w, "Detector:\t%s\n", d.Sighting.Sighting.Detector)
	fmt.Fprintf(w, "Received:\t%s\n", timeCell(d.Received))
	if d.Ack == nil {
		fmt.Fprintf(w, "Acknowledged:\tno\n")
		return
	}
	fmt.Fprintf(w, "Acknowledged:\tby %s at %s\n", d.Ack.By, timeCell(d.Ack.At))
	if d.Ack.Note != "" {
		fmt.Fprintf(w, "Note:\t%s\n", d.Ack.Note)
	}
}

func newDetectionsCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "detections",
		Short: "List this node's own detections and acknowledge them",
		Long: `List the sightings this node's own detectors produced, each with a stable ID
and who acknowledged it; acknowledge one (responder) so that the team sees it
is handled, or withdraw an acknowledgement.`,
		Example: `  meshward detections list --unacknowledged
  meshward detections ack 5c1e0f9a2b7d4e63 --note "blocked at the edge"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.register(cmd)
	var limit int
	var acked, unacked bool
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List this node's own detections, newest first, with who acknowledged them",
		Example: `  meshward detections list --limit 50
  meshward detections list --unacknowledged -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := admin.DetectionQuery{Limit: limit}
			switch {
			case acked && unacked:
				return errors.New("--acknowledged and --unacknowledged exclude each other")
			case acked:
				q.Acknowledged = &acked
			case unacked:
				no := false
				q.Acknowledged = &no
			}
			return run(cmd, &f, func(c *admin.Client) ([]admin.Detection, error) { return c.Detections(cmd.Context(), q) }, printDetections)
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "at most this many (1 to 10000)")
	list.Flags().BoolVar(&acked, "acknowledged", false, "only acknowledged detections")
	list.Flags().BoolVar(&unacked, "unacknowledged", false, "only detections nobody has acknowledged")
	var note string
	ack := &cobra.Command{
		Use:   "ack DETECTION-ID",
		Short: "Acknowledge a detection, so that the team sees it is handled (responder)",
		Long: `Acknowledge one of this node's detections, by the ID that "detections list"
shows, with an optional note. A detection is acknowledged once: a second
acknowledgement is refused and names the first. The acknowledgement is
written to the audit trail.`,
		Example: `  meshward detections ack 5c1e0f9a2b7d4e63
  meshward detections ack 5c1e0f9a2b7d4e63 --note "false positive: our scanner"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.Detection, error) { return c.Ack(cmd.Context(), args[0], note) }, printDetection)
		},
	}
	ack.Flags().StringVar(&note, "note", "", "what was done or found, for the team (at most 1024 bytes)")
	unack := &cobra.Command{
		Use:     "unack DETECTION-ID",
		Short:   "Withdraw the acknowledgement of a detection (responder)",
		Example: "  meshward detections unack 5c1e0f9a2b7d4e63",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (map[string]string, error) {
				return map[string]string{"unacknowledged": args[0]}, c.Unack(cmd.Context(), args[0])
			}, func(w io.Writer, _ map[string]string) {
				fmt.Fprintf(w, "withdrew the acknowledgement of detection %s\n", args[0])
			})
		},
	}
	cmd.AddCommand(list, ack, unack)
	return cmd
}

func newAuditCmd() *cobra.Command {
	var f clientFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit trail of changes made through the admin API",
		Long: `Show who changed what through this node's admin API, when, and with what
result, newest first. Refused changes (wrong role) are listed too.`,
		Example: "  meshward audit\n  meshward audit --limit 500 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]admin.AuditEntry, error) { return c.Audit(cmd.Context(), limit) },
				func(w io.Writer, es []admin.AuditEntry) {
					fmt.Fprintln(w, "TIME\tACTOR\tACTION\tTARGET\tRESULT\tDETAIL")
					for _, e := range es {
						res := e.Result
						if e.Error != "" {
							res += ": " + truncate(e.Error, 60)
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", timeCell(e.Time), e.Actor, e.Action, orDash(e.Target), res, orDash(truncate(e.Detail, 60)))
					}
				})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many entries (1 to 10000)")
	f.register(cmd)
	return cmd
}

func printTokens(w io.Writer, ts []admin.Token) {
	fmt.Fprintln(w, "ID\tNAME\tROLE\tCREATED\tCREATED BY")
	for _, t := range ts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, timeCell(t.CreatedAt), orDash(t.CreatedBy))
	}
}

func newTokenCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "token",
		Aliases: []string{"tokens"},
		Short:   "Create, list and revoke admin API tokens (admin)",
		Long: `Tokens grant one role: viewer (read), responder (read and local blocks) or
admin (everything). A token's secret is printed once, when it is created.`,
		Example: "  meshward token create --role viewer --name grafana\n  meshward token list\n  meshward token revoke 0a1b2c3d4e5f6071",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.register(cmd)
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

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "config",
		Short:   "Work with node configuration files",
		Example: "  meshward config validate /etc/meshward/node.yaml",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a node configuration file; print every problem, one per line",
		Long: `Check a node configuration file as meshward agent would: unknown fields,
wrong types and invalid values. Every problem is printed on its own line and
the exit status is 1 if there is any. No node is contacted.`,
		Example: "  meshward config validate /etc/meshward/node.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("read config: %w", err)
			}
			if _, err := node.ParseConfig(b); err != nil {
				for _, e := range flattenErrors(err) {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", path, e)
				}
				return exitError{fmt.Errorf("config %s is invalid", path)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return nil
		},
	}
	cmd.AddCommand(validate)
	return cmd
}

// flattenErrors lists the leaves of joined errors, one line each.
func flattenErrors(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			if e != nil {
				out = append(out, flattenErrors(e)...)
			}
		}
		return out
	}
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
