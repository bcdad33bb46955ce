package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/intel"
)

func newMeshCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:   "mesh",
		Short: "Change the mesh's corroboration rule and safety floors (admin operator)",
		Long: `The corroboration rule (how many distinct nodes must sight an indicator within
a window before it is blocked mesh-wide) and the safety floors (the widest
address range a block or allow may name) are held by consensus; changing
them is an operator command, signed with an admin operator key.`,
		Example: `  meshward mesh rules set --min-nodes 3 --window 15m
  meshward mesh floors set --ipv4 16 --ipv6 32`,
	}, &f)

	rules := nounCmd(&cobra.Command{
		Use:     "rules",
		Short:   "The corroboration rule: k distinct nodes within a window",
		Example: "  meshward mesh rules set --min-nodes 2 --window 10m",
	}, nil)
	var minNodes int
	var window time.Duration
	rs := &signer{deps: deps}
	rulesSet := &cobra.Command{
		Use:     "set --min-nodes K --window DURATION",
		Short:   "Set how many distinct nodes within what window make a mesh-wide block",
		Example: "  meshward mesh rules set --min-nodes 3 --window 15m",
		Args:    cobra.NoArgs,
		RunE: signedCmd(&f, rs, func(*cobra.Command, []string) (intel.OperatorCommand, error) {
			secs, err := seconds("window", window)
			if err != nil {
				return intel.OperatorCommand{}, err
			}
			return intel.OperatorCommand{Op: intel.OpSetCorroboration, MinNodes: minNodes, WindowSeconds: secs}, nil
		}, nil),
	}
	rulesSet.Flags().IntVar(&minNodes, "min-nodes", 0, "distinct nodes that must sight an indicator (required)")
	rulesSet.Flags().DurationVar(&window, "window", 0, "within this window (required)")
	rulesSet.MarkFlagRequired("min-nodes")
	rulesSet.MarkFlagRequired("window")
	rs.key.register(rulesSet.Flags())
	rules.AddCommand(rulesSet)

	floors := nounCmd(&cobra.Command{
		Use:     "floors",
		Short:   "The safety floors: the widest range a block or allow may name",
		Example: "  meshward mesh floors set --ipv4 16 --ipv6 32",
	}, nil)
	var v4, v6 int
	fs := &signer{deps: deps}
	floorsSet := &cobra.Command{
		Use:   "set --ipv4 BITS --ipv6 BITS",
		Short: "Set the shortest IPv4 and IPv6 prefixes a policy may name without --wide",
		Example: `  meshward mesh floors set --ipv4 16 --ipv6 32
  meshward mesh floors set --ipv4 24 --ipv6 48`,
		Args: cobra.NoArgs,
		RunE: signedCmd(&f, fs, func(*cobra.Command, []string) (intel.OperatorCommand, error) {
			return intel.OperatorCommand{Op: intel.OpSetFloors, Floors: &intel.Floors{MinIPv4Bits: v4, MinIPv6Bits: v6}}, nil
		}, nil),
	}
	floorsSet.Flags().IntVar(&v4, "ipv4", 0, "shortest IPv4 prefix length, 0 to 32 (required; the default floor is 16)")
	floorsSet.Flags().IntVar(&v6, "ipv6", 0, "shortest IPv6 prefix length, 0 to 128 (required; the default floor is 32)")
	floorsSet.MarkFlagRequired("ipv4")
	floorsSet.MarkFlagRequired("ipv6")
	fs.key.register(floorsSet.Flags())
	floors.AddCommand(floorsSet)

	risk := nounCmd(&cobra.Command{
		Use:     "risk",
		Short:   "The risk threshold: the least risk score an automatic block's proof must reach",
		Example: "  meshward mesh risk set --min-risk 40",
	}, nil)
	var minRisk int
	ks := &signer{deps: deps}
	riskSet := &cobra.Command{
		Use:   "set --min-risk SCORE",
		Short: "Set the least risk score (0..100, 0 off) an automatic block's proof must reach",
		Long: `Every node checks the threshold while applying the log, from what the block's
entry holds alone: its signed sightings (severity, confidence, technique, time),
each signer's trust at that point of the log, and the entry's time. The ATT&CK
tactic, reports and CVE/KEV links are not in the entry and do not count here;
they count in the score the nodes display (meshward iocs show).`,
		Example: "  meshward mesh risk set --min-risk 40\n  meshward mesh risk set --min-risk 0",
		Args:    cobra.NoArgs,
		RunE: signedCmd(&f, ks, func(*cobra.Command, []string) (intel.OperatorCommand, error) {
			return intel.OperatorCommand{Op: intel.OpSetMinRisk, MinRisk: minRisk}, nil
		}, nil),
	}
	riskSet.Flags().IntVar(&minRisk, "min-risk", 0, "least risk score, 0 to 100; 0 turns the check off (required)")
	riskSet.MarkFlagRequired("min-risk")
	ks.key.register(riskSet.Flags())
	risk.AddCommand(riskSet)

	dist := nounCmd(&cobra.Command{
		Use:     "distributed",
		Short:   "The distributed rule: blocks proven by sub-threshold summaries from many sites",
		Example: "  meshward mesh distributed set --min-sites 5 --threshold 20 --site-cap 4",
	}, nil)
	var minSites, threshold, siteCap int
	ds := &signer{deps: deps}
	distSet := &cobra.Command{
		Use:   "set --min-sites K --threshold N --site-cap C",
		Short: "Set the distributed rule (all three 0 turn it off)",
		Long: `An attacker who stays under every site's threshold is blocked when at least
--min-sites members sent partial sightings (sub-threshold summaries,
corroboration.distributed.summaries on the nodes) of it within the window and
their counts, each member's capped at --site-cap, sum to --threshold. Every
node checks this while applying the log, from the signed partials in the
entry alone. Partials never count towards min_nodes.`,
		Example: "  meshward mesh distributed set --min-sites 5 --threshold 20 --site-cap 4\n  meshward mesh distributed set --min-sites 0 --threshold 0 --site-cap 0",
		Args:    cobra.NoArgs,
		RunE: signedCmd(&f, ds, func(*cobra.Command, []string) (intel.OperatorCommand, error) {
			return intel.OperatorCommand{Op: intel.OpSetDistributed, DistributedMinSites: minSites,
				DistributedThreshold: threshold, DistributedSiteCap: siteCap}, nil
		}, nil),
	}
	distSet.Flags().IntVar(&minSites, "min-sites", 0, "distinct members whose partial sightings are needed (required)")
	distSet.Flags().IntVar(&threshold, "threshold", 0, "events their capped counts must sum to (required)")
	distSet.Flags().IntVar(&siteCap, "site-cap", 0, "most events one member's partials count for (required)")
	for _, n := range []string{"min-sites", "threshold", "site-cap"} {
		distSet.MarkFlagRequired(n)
	}
	ds.key.register(distSet.Flags())
	dist.AddCommand(distSet)

	cmd.AddCommand(rules, floors, risk, dist)
	return cmd
}
