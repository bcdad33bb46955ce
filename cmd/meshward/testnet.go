package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
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
		ps := testnet.ReadProcessStats(nodes)
		if r, ok := rep.(*testnet.Report); ok && r.Memory != nil {
			ps = *r.Memory // every process's, when several ran the mesh
		}
		if err := testnet.WriteReportDir(tf.report, rep, rep.ChartData(), ps); err != nil {
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
	pprof                   string
	verbose, progress       bool
	processes               int
}

func (f *testnetFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	fs.StringVar(&f.report, "report", "", "write report.json and SVG charts (propagation and enforcement CDFs, per-node timeline) into this directory")
	fs.StringVar(&f.profile, "profile", "", "node resource profile: default or sim (fewer connections, longer heartbeats); empty: sim above 50 nodes")
	fs.BoolVar(&f.progress, "progress", true, "show the mesh forming (nodes started, joined, ready) on stderr once a second")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "print the nodes' logs to stderr")
	fs.StringVar(&f.pprof, "pprof", "", "serve this process's Go profiles (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060, to look into a slow run")
	fs.IntVar(&f.processes, "processes", 0, "spread the nodes over this many processes (each holds its own open files); 0: as many as the open-files limit needs")
}

func (f *testnetFlags) check() error {
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("-o %q: allowed values are table and json", f.output)
	}
	if f.profile != "" && f.profile != testnet.ProfileDefault && f.profile != testnet.ProfileSim {
		return fmt.Errorf("--profile %q: allowed values are %s and %s", f.profile, testnet.ProfileDefault, testnet.ProfileSim)
	}
	if f.processes < 0 {
		return fmt.Errorf("--processes %d: must not be negative", f.processes)
	}
	return nil
}

// chooseProcesses resolves --processes for a mesh of nodes given the
// open-files limit soft (0: unknown), telling w what it chose.
func (f *testnetFlags) chooseProcesses(w io.Writer, nodes int, soft uint64) (int, error) {
	if f.processes > nodes {
		return 0, fmt.Errorf("--processes %d: more than the %d nodes", f.processes, nodes)
	}
	if f.processes > 0 {
		return f.processes, nil
	}
	if soft == 0 {
		return 1, nil
	}
	p, fds := testnet.ChooseProcesses(nodes, f.profile, soft)
	fmt.Fprintf(w, "%d nodes in %d process(es): about %d open files in the busiest, of the %d allowed each\n", nodes, p, fds, soft)
	return p, nil
}

// workerCommand runs this executable as a worker, logging to stderr with
// --verbose.
func (f *testnetFlags) workerCommand() (func() *exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--processes: this executable: %w", err)
	}
	args := slices.Clone(testnet.WorkerArgs)
	if f.verbose {
		args = append(args, "--verbose")
	}
	return func() *exec.Cmd { return exec.Command(exe, args...) }, nil
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
// node holds sockets and store files. It returns the soft limit then (0
// when it cannot tell).
func raiseFileLimit(w io.Writer) uint64 {
	soft, _, err := testnet.RaiseFileLimit()
	if err != nil {
		fmt.Fprintf(w, "warning: %v\n", err)
	}
	return soft
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
heartbeats) unless --profile says otherwise. The nodes are spread over
--processes processes (each holds its own open files), by default as many as
the open-files limit needs; --processes 1 runs them all in this one. "meshward testnet run FILE" runs
a scenario file instead.`,
		Example: `  meshward testnet
  meshward testnet -n 7 --attacked 3 -o json
  meshward testnet -n 200 --report ./report
  meshward testnet -n 300 --processes 3 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := tf.check(); err != nil {
				return err
			}
			if tf.pprof != "" {
				stop, err := servePprof(cmd.ErrOrStderr(), tf.pprof)
				if err != nil {
					return err
				}
				defer stop()
			}
			addr, err := netip.ParseAddr(attacker)
			if err != nil {
				return fmt.Errorf("--attacker %q: %w", attacker, err)
			}
			soft := raiseFileLimit(cmd.ErrOrStderr())
			processes, err := tf.chooseProcesses(cmd.ErrOrStderr(), nodes, soft)
			if err != nil {
				return err
			}
			worker, err := tf.workerCommand()
			if err != nil {
				return err
			}
			if tf.output == "table" {
				fmt.Fprintf(cmd.ErrOrStderr(), "starting %d nodes on 127.0.0.1...\n", nodes)
			}
			o := testnet.ScenarioOptions{
				Options: testnet.Options{Nodes: nodes, Logger: tf.logger(), MinNodes: minNodes, LocalBlock: localBlock,
					Profile: tf.profile, Progress: tf.progressTo(cmd.ErrOrStderr())},
				Attacked:      attacked,
				Attacker:      addr,
				Timeout:       timeout,
				Processes:     processes,
				WorkerCommand: worker,
			}
			if tf.verbose {
				o.WorkerStderr = cmd.ErrOrStderr()
			}
			rep, err := testnet.RunBruteForce(cmd.Context(), o)
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
	f.DurationVar(&timeout, "timeout", 0, "give up after this long, formation included; 0: two minutes and a second for each node above 50")
	f.BoolVar(&localBlock, "local-block", true, "let detecting nodes block at once, before the mesh agrees")
	tf.register(cmd)
	addNetnsMode(cmd, "sudo meshward testnet --netns -n 4", netnsBruteForce)
	cmd.AddCommand(newTestnetRunCmd(), newTestnetWorkerCmd())
	return cmd
}

// newTestnetWorkerCmd is the hidden command a worker process of
// `meshward testnet --processes N` runs: it speaks the control protocol
// on its standard input and output and runs the nodes it is given.
func newTestnetWorkerCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a share of a testnet's nodes for the process that started it",
		Long: `Run the nodes a coordinator (meshward testnet --processes N) gives this process,
speaking its control protocol (JSON lines) on standard input and output; exit
when told to close, when standard input ends or when the coordinator dies.`,
		Example: "  meshward testnet -n 300 --processes 3   # starts two of these",
		Hidden:  true,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raiseFileLimit(cmd.ErrOrStderr())
			tf := testnetFlags{verbose: verbose}
			err := testnet.ServeWorker(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), tf.logger())
			if errors.Is(err, context.Canceled) {
				return nil // SIGTERM: the coordinator is gone
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the nodes' logs to stderr")
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
			if tf.pprof != "" {
				stop, err := servePprof(cmd.ErrOrStderr(), tf.pprof)
				if err != nil {
					return err
				}
				defer stop()
			}
			if size < 0 {
				return fmt.Errorf("--size %d: must not be negative", size)
			}
			if tf.processes > 1 {
				return fmt.Errorf("--processes %d: a scenario file runs in one process (its steps reach into every node); leave --processes out", tf.processes)
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
	addNetnsMode(cmd, "sudo meshward testnet run --netns testnet/scenarios/netns/wan-latency.yaml", netnsScenario)
	return cmd
}
