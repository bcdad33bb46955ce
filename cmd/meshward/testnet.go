package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/testnet"
)

func newTestnetCmd() *cobra.Command {
	var (
		nodes, attacked, minNodes int
		attacker, output          string
		timeout                   time.Duration
		verbose, localBlock       bool
	)
	cmd := &cobra.Command{
		Use:   "testnet",
		Short: "Run a local mesh and show an attack being detected, shared, agreed on and enforced",
		Long: `Start a mesh of real nodes on 127.0.0.1 (libp2p, Raft and Badger in temporary
directories), replay an SSH brute force into some of their auth logs, and wait
until every node enforces the mesh-wide block. Prints the timeline; with
-o json, one JSON object. Exits 0 only when every node enforces.`,
		Example: `  meshward testnet
  meshward testnet -n 7 --attacked 3 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: allowed values are table and json", output)
			}
			addr, err := netip.ParseAddr(attacker)
			if err != nil {
				return fmt.Errorf("--attacker %q: %w", attacker, err)
			}
			logger := slog.New(slog.DiscardHandler)
			if verbose {
				logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			if output == "table" {
				fmt.Fprintf(cmd.ErrOrStderr(), "starting %d nodes on 127.0.0.1...\n", nodes)
			}
			rep, err := testnet.RunBruteForce(cmd.Context(), testnet.ScenarioOptions{
				Options:  testnet.Options{Nodes: nodes, Logger: logger, MinNodes: minNodes, LocalBlock: localBlock},
				Attacked: attacked,
				Attacker: addr,
				Timeout:  timeout,
			})
			if rep == nil {
				return err
			}
			if output == "json" {
				if werr := rep.WriteJSON(cmd.OutOrStdout()); werr != nil {
					return werr
				}
			} else if werr := rep.WriteText(cmd.OutOrStdout()); werr != nil {
				return werr
			}
			if err != nil || !rep.OK() {
				return exitError{fmt.Errorf("mesh did not converge")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&nodes, "nodes", "n", 5, "number of nodes")
	f.IntVar(&attacked, "attacked", 2, "number of nodes the attacker hits")
	f.IntVar(&minNodes, "min-nodes", 2, "corroboration threshold: distinct nodes that must sight the attacker")
	f.StringVar(&attacker, "attacker", "203.0.113.66", "attacker source address")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the nodes' logs to stderr")
	f.BoolVar(&localBlock, "local-block", true, "let detecting nodes block at once, before the mesh agrees")
	return cmd
}
