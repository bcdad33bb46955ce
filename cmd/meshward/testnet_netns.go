package main

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/testnet"
)

// addNetnsMode gives a testnet command --netns: with it, run takes the
// place of the command's own RunE; example is added to its examples.
func addNetnsMode(cmd *cobra.Command, example string, run func(*cobra.Command, []string) error) {
	var on bool
	cmd.Flags().BoolVar(&on, "netns", false, "namespace mode (Linux, root): every node a `meshward agent` process of this binary in its own network namespace, enforcing with nftables in it; topology.links by netem, or by an NFQUEUE delay where the kernel has no netem")
	inner := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if on {
			return run(c, args)
		}
		return inner(c, args)
	}
	cmd.Example += "\n  " + example
}

// netnsFlags are the shared flags a namespace-mode run reads, by name.
func netnsFlags(cmd *cobra.Command) (testnetFlags, error) {
	fs := cmd.Flags()
	var tf testnetFlags
	tf.output, _ = fs.GetString("output")
	tf.report, _ = fs.GetString("report")
	tf.profile, _ = fs.GetString("profile")
	if err := tf.check(); err != nil {
		return tf, err
	}
	if f := fs.Lookup("processes"); f != nil && f.Changed {
		return tf, fmt.Errorf("--processes with --netns: every node is a process of its own already")
	}
	if f := fs.Lookup("verbose"); f != nil && f.Changed {
		return tf, fmt.Errorf("--verbose with --netns: each agent logs to agent.log in its data directory")
	}
	return tf, nil
}

// runNetns runs s in namespace mode and writes its report.
func runNetns(cmd *cobra.Command, tf testnetFlags, s *testnet.Scenario, size int) error {
	o := testnet.NetnsRunOptions{RunOptions: testnet.RunOptions{Size: size, Profile: tf.profile}}
	if tf.output == "table" {
		o.Narrate = cmd.ErrOrStderr()
		fmt.Fprintln(cmd.ErrOrStderr(), "starting the agents, each in its own network namespace...")
	}
	if left, _ := testnet.LeftoverNamespaces("mwn-"); len(left) > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "note: %d network namespaces of other runs exist (%s...): runs in progress, or left by one that was killed; remove a killed run's with: ip netns del NAME\n", len(left), left[0])
	}
	rep, err := testnet.RunScenarioNetns(cmd.Context(), s, o)
	if rep == nil {
		return err
	}
	if tf.report != "" {
		// The agents' memory, not this process's.
		ps := testnet.ReadProcessStats(rep.Nodes)
		if rep.Memory != nil {
			ps = *rep.Memory
		}
		if werr := testnet.WriteReportDir(tf.report, rep, rep.ChartData(), ps); werr != nil {
			return werr
		}
		tf.report = ""
	}
	if werr := tf.write(cmd, rep, rep.Nodes); werr != nil {
		return werr
	}
	if err != nil {
		return exitError{err}
	}
	return nil
}

// netnsBruteForce is `meshward testnet --netns`.
func netnsBruteForce(cmd *cobra.Command, _ []string) error {
	tf, err := netnsFlags(cmd)
	if err != nil {
		return err
	}
	fs := cmd.Flags()
	nodes, _ := fs.GetInt("nodes")
	attacked, _ := fs.GetInt("attacked")
	minNodes, _ := fs.GetInt("min-nodes")
	attacker, _ := fs.GetString("attacker")
	timeout, _ := fs.GetDuration("timeout")
	if timeout == 0 {
		timeout = testnet.DefaultTimeout(nodes)
	}
	localBlock, _ := fs.GetBool("local-block")
	addr, err := netip.ParseAddr(attacker)
	if err != nil {
		return fmt.Errorf("--attacker %q: %w", attacker, err)
	}
	s, err := testnet.BruteForceScenario(nodes, attacked, minNodes, addr, localBlock, timeout)
	if err != nil {
		return err
	}
	return runNetns(cmd, tf, s, 0)
}

// netnsScenario is `meshward testnet run --netns FILE`.
func netnsScenario(cmd *cobra.Command, args []string) error {
	tf, err := netnsFlags(cmd)
	if err != nil {
		return err
	}
	size, _ := cmd.Flags().GetInt("size")
	if size < 0 {
		return fmt.Errorf("--size %d: must not be negative", size)
	}
	s, err := testnet.LoadScenario(args[0])
	if err != nil {
		return err
	}
	return runNetns(cmd, tf, s, size)
}
