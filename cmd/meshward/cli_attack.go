package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

// newIntelAttackCmd is `meshward intel attack TECHNIQUE`: the technique
// and its tactics from the node's ATT&CK catalog, and what the mesh saw
// under it among the node's most recent sightings.
func newIntelAttackCmd() *cobra.Command {
	var f clientFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "attack TECHNIQUE",
		Short: "Show an ATT&CK technique from the node's catalog and what the mesh saw under it",
		Long: `Names the technique and its tactics from the node's ATT&CK catalog
(intel.attack_path) and counts, among the node's 10000 most recent sightings,
those whose technique is it or one of its sub-techniques, by technique, with
the most recent of them.`,
		Example: "  meshward intel attack T1110\n  meshward intel attack T1110.001 --limit 5 -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &f, func(c *admin.Client) (admin.AttackView, error) {
				return c.Attack(cmd.Context(), args[0], limit)
			}, printAttack)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "list at most this many of the sightings")
	f.register(cmd)
	return cmd
}

func printAttack(w io.Writer, v admin.AttackView) {
	t := v.Technique
	fmt.Fprintf(w, "Technique:\t%s %s\n", t.ID, t.Name)
	if t.Parent != "" {
		fmt.Fprintf(w, "Parent:\t%s\n", t.Parent)
	}
	var tactics []string
	for _, tac := range t.Tactics {
		if tac.Name != "" {
			tactics = append(tactics, fmt.Sprintf("%s %s (%s)", tac.ID, tac.Name, tac.ShortName))
		} else {
			tactics = append(tactics, tac.ShortName)
		}
	}
	fmt.Fprintf(w, "Tactics:\t%s\n", orDash(strings.Join(tactics, ", ")))
	if len(t.Subtechniques) > 0 {
		fmt.Fprintf(w, "Sub-techniques:\t%s\n", strings.Join(t.Subtechniques, ", "))
	}
	if t.URL != "" {
		fmt.Fprintf(w, "URL:\t%s\n", t.URL)
	}
	fmt.Fprintf(w, "Seen:\t%d of the %d most recent sightings, %d indicators, %d nodes\n", v.Matched, v.Scanned, v.Indicators, v.Origins)
	for _, k := range slices.Sorted(maps.Keys(v.ByTechnique)) {
		fmt.Fprintf(w, "  %s:\t%d\n", k, v.ByTechnique[k])
	}
	if len(v.Sightings) > 0 {
		fmt.Fprintln(w)
		printSightings(w, v.Sightings)
	}
}
