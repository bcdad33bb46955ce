package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/testnet"
)

// testnetFlags are the flags `meshward testnet` and `meshward testnet
// run` share.
// testnetReport is what the reports of both runs (the brute force and a
// scenario file) give the output.
type testnetReport interface {
	ChartData() testnet.ChartData
	WriteJSON(io.Writer) error
	WriteText(io.Writer) error
}

// write puts rep where the flags say: the report directory (--report),
// then JSON or text on standard output.
func (tf *testnetFlags) write(cmd *cobra.Command, rep testnetReport, nodes int) error {
	if tf.report != "" {
		if err := testnet.WriteReportDir(tf.report, rep, rep.ChartData(), testnet.ReadProcessStats(nodes)); err != nil {
			return err
		}
	}
	if tf.output == "json" {
		return rep.WriteJSON(cmd.OutOrStdout())
	}
	return rep.WriteText(cmd.OutOrStdout())
}

type testnetFlags struct {
	output, report, profile string
	verbose, progress       bool
}

func (f *testnetFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	fs.StringVar(&f.report, "report", "", "write report.json and SVG charts (propagation and enforcement CDFs, per-node timeline) into this directory")
	fs.StringVar(&f.profile, "profile", "", "node resource profile: default or sim (fewer connections, longer heartbeats); empty: sim above 50 nodes")
	fs.BoolVar(&f.progress, "progress", true, "show the mesh forming (nodes started, joined, ready) on stderr once a second")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "print the nodes' logs to stderr")
}

func (f *testnetFlags) check() error {
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("-o %q: allowed values are table and json", f.output)
	}
	if f.profile != "" && f.profile != testnet.ProfileDefault && f.profile != testnet.ProfileSim {
		return fmt.Errorf("--profile %q: allowed values are %s and %s", f.profile, testnet.ProfileDefault, testnet.ProfileSim)
	}
	return nil
}

func (f *testnetFlags) logger() *slog.Logger {
	if f.verbose {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

func (f *testnetFlags) progressTo(w io.Writer) func(testnet.Progress) {
	if !f.progress {
		return nil
	}
	return func(p testnet.Progress) { fmt.Fprintln(w, p) }
}

// raiseFileLimit lifts the open-files limit to the hard limit: every
// node holds sockets and store files.
func raiseFileLimit(w io.Writer) {
	if _, _, err := testnet.RaiseFileLimit(); err != nil {
		fmt.Fprintf(w, "warning: %v\n", err)
	}
}

func newTestnetCmd() *cobra.Command {
	var (
		nodes, attacked, minNodes int
		attacker                  string
		timeout                   time.Duration
		localBlock                bool
		tf                        testnetFlags
	)
	cmd := &cobra.Command{
		Use:   "testnet",
		Short: "Run a local mesh and show an attack being detected, shared, agreed on and enforced",
		Long: `Start a mesh of real nodes on 127.0.0.1 (libp2p, Raft and Badger in temporary
directories), replay an SSH brute force into some of their auth logs, and wait
until every node enforces the mesh-wide block. Prints the timeline; with
-o json, one JSON object; with --report DIR, also report.json and SVG charts.
Exits 0 only when every node enforces.

Above 50 nodes the nodes run the sim profile (each dials a few peers, longer
heartbeats) unless --profile says otherwise. "meshward testnet run FILE" runs
a scenario file instead.`,
		Example: `  meshward testnet
  meshward testnet -n 7 --attacked 3 -o json
  meshward testnet -n 200 --report ./report`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := tf.check(); err != nil {
				return err
			}
			addr, err := netip.ParseAddr(attacker)
			if err != nil {
				return fmt.Errorf("--attacker %q: %w", attacker, err)
			}
			raiseFileLimit(cmd.ErrOrStderr())
			if tf.output == "table" {
				fmt.Fprintf(cmd.ErrOrStderr(), "starting %d nodes on 127.0.0.1...\n", nodes)
			}
			rep, err := testnet.RunBruteForce(cmd.Context(), testnet.ScenarioOptions{
				Options: testnet.Options{Nodes: nodes, Logger: tf.logger(), MinNodes: minNodes, LocalBlock: localBlock,
					Profile: tf.profile, Progress: tf.progressTo(cmd.ErrOrStderr())},
				Attacked: attacked,
				Attacker: addr,
				Timeout:  timeout,
			})
			if rep == nil {
				return err
			}
			if werr := tf.write(cmd, rep, rep.Nodes); werr != nil {
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
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	f.BoolVar(&localBlock, "local-block", true, "let detecting nodes block at once, before the mesh agrees")
	tf.register(cmd)
	cmd.AddCommand(newTestnetRunCmd())
	return cmd
}

func newTestnetRunCmd() *cobra.Command {
	var (
		size int
		tf   testnetFlags
	)
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a scenario file: a topology and a timeline of attacks, faults and expectations",
		Long: `Run a scenario file (YAML, decoded strictly: an unknown field or a bad value is
an error naming its line). The topology says how many nodes and which groups;
the timeline's steps run in order: attacks (brute_force, port_scan,
low_and_slow), faults (kill, restart, partition, heal, skew), a rogue member
(forge, flood), a stranger opening the mesh's protocols, operator commands,
and expectations (committed, enforced, not_enforced, never_blocked, refused,
running, voters) polled until their deadline. Prints a verdict per
expectation; exits 1 when any failed. Shipped scenarios are in the source
tree's testnet/scenarios.`,
		Example: `  meshward testnet run testnet/scenarios/leader-kill.yaml
  meshward testnet run --size 9 --report ./report testnet/scenarios/partition-2-3.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := tf.check(); err != nil {
				return err
			}
			if size < 0 {
				return fmt.Errorf("--size %d: must not be negative", size)
			}
			s, err := testnet.LoadScenario(args[0])
			if err != nil {
				return err
			}
			raiseFileLimit(cmd.ErrOrStderr())
			o := testnet.RunOptions{Size: size, Profile: tf.profile, Logger: tf.logger(), Progress: tf.progressTo(cmd.ErrOrStderr())}
			if tf.output == "table" {
				o.Narrate = cmd.ErrOrStderr()
			}
			rep, err := testnet.RunScenario(cmd.Context(), s, o)
			if rep == nil {
				return err
			}
			if werr := tf.write(cmd, rep, rep.Nodes); werr != nil {
				return werr
			}
			if err != nil {
				return exitError{err}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&size, "size", 0, "run on this many nodes instead of the topology's")
	tf.register(cmd)
	return cmd
}
