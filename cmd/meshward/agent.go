package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/node"
)

func newAgentCmd() *cobra.Command {
	var configPath string
	var join []string
	var leave bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a Meshward node",
		Long: `Run a Meshward node with the configuration in --config (YAML). The node
detects attacks in its logs, gossips signed sightings, takes part in Raft and
enforces mesh-wide policies until it receives SIGINT or SIGTERM. SIGHUP
reloads the rules, the protected ranges, the log level and the responders
from --config; an invalid file changes nothing (the error is logged and
counted in meshward_config_reload_failures_total).

The Go collector runs when the heap has grown by half since the last
collection (GOGC=50; Go's own default is 100), so that its heap peaks at
about 1.5 times what it holds rather than twice, at little cost: most of
what a node holds (policies) is in tables without pointers, which a
collection does not scan.
GOGC and GOMEMLIMIT in the environment take precedence.`,
		Example: `  meshward agent --config /etc/meshward/node.yaml
  meshward agent --config node.yaml --join /ip4/10.0.0.1/tcp/7946/p2p/12D3KooW...
  meshward agent --config node.yaml --leave-on-shutdown   # decommissioning a site`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// load reads the file and applies the flags, at start and on
			// every SIGHUP.
			load := func() (node.Config, error) {
				cfg := node.DefaultConfig()
				if configPath != "" {
					var err error
					if cfg, err = node.LoadConfig(configPath); err != nil {
						return node.Config{}, err
					}
				}
				if leave {
					cfg.Consensus.LeaveOnShutdown = true
				}
				if len(join) > 0 {
					cfg.Consensus.Join = append(cfg.Consensus.Join, join...)
					if err := cfg.Validate(); err != nil {
						return node.Config{}, fmt.Errorf("config: %w", err)
					}
				}
				return cfg, nil
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			applyRuntimeDefaults(os.LookupEnv)
			level := new(slog.LevelVar)
			level.Set(node.ParseLogLevel(cfg.LogLevel))
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			// SIGHUP reloads what can change at run time; registered before
			// the node starts, so that an early one does not kill it.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			n, err := node.Start(cmd.Context(), cfg, node.Options{Logger: logger, LogLevel: level, Version: version})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "meshward node %s (site %s) running; addresses:\n", n.ID(), n.Site())
			for _, a := range n.Addrs() {
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", a)
			}
		wait:
			for {
				select {
				case <-cmd.Context().Done():
					break wait
				case <-hup:
					logger.Info("SIGHUP: reloading the configuration", "path", configPath)
					_ = n.Reload(load) // logged and counted by the node
				}
			}
			// Stop intake and close cleanly; a second signal forces exit.
			force := make(chan os.Signal, 1)
			signal.Notify(force, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(force)
			go func() {
				if _, ok := <-force; ok {
					fmt.Fprintln(os.Stderr, "meshward: second signal, exiting without a clean shutdown")
					os.Exit(1)
				}
			}()
			logger.Info("shutting down")
			return n.Close()
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "node configuration file (YAML)")
	cmd.Flags().BoolVar(&leave, "leave-on-shutdown", false, "leave the mesh for good on SIGINT/SIGTERM (consensus.leave_on_shutdown)")
	cmd.Flags().StringSliceVar(&join, "join", nil, "multiaddr of a mesh member to join through (adds to consensus.join)")
	return cmd
}

// agentGCPercent is the agent's GOGC unless the environment sets one.
const agentGCPercent = 50

// applyRuntimeDefaults sets the agent's runtime defaults that the
// environment (lookup) does not set: the collector's target
// (agentGCPercent). It returns the GOGC in force.
func applyRuntimeDefaults(lookup func(string) (string, bool)) int {
	if _, set := lookup("GOGC"); set {
		prev := debug.SetGCPercent(100)
		debug.SetGCPercent(prev)
		return prev
	}
	debug.SetGCPercent(agentGCPercent)
	return agentGCPercent
}
