package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
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
enforces mesh-wide policies until it receives SIGINT or SIGTERM.`,
		Example: `  meshward agent --config /etc/meshward/node.yaml
  meshward agent --config node.yaml --join /ip4/10.0.0.1/tcp/7946/p2p/12D3KooW...
  meshward agent --config node.yaml --leave-on-shutdown   # decommissioning a site`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := node.DefaultConfig()
			if configPath != "" {
				var err error
				if cfg, err = node.LoadConfig(configPath); err != nil {
					return err
				}
			}
			if leave {
				cfg.Consensus.LeaveOnShutdown = true
			}
			if len(join) > 0 {
				cfg.Consensus.Join = append(cfg.Consensus.Join, join...)
				if err := cfg.Validate(); err != nil {
					return fmt.Errorf("config: %w", err)
				}
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: parseLevel(cfg.LogLevel)}))
			n, err := node.Start(cmd.Context(), cfg, node.Options{Logger: logger, Version: version})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "meshward node %s (site %s) running; addresses:\n", n.ID(), n.Site())
			for _, a := range n.Addrs() {
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", a)
			}
			<-cmd.Context().Done()
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

func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
