// Command meshward is the single Meshward binary: `meshward agent` runs a
// node, `meshward testnet` runs a local mesh; further subcommands are the
// operator's admin CLI, `meshward <noun> <verb>`, each noun in its own
// cli_<noun>.go and all of them clients of a node's admin API through the
// flags, output and helpers of cli_client.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		var ee exitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "meshward:", err)
		}
		os.Exit(1)
	}
}

// exitError marks an error already reported to the user.
type exitError struct{ error }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "meshward",
		Short: "Meshward: a decentralized security mesh",
		Long: `Meshward detects attacks from local logs, shares signed sightings with every
other node over libp2p GossipSub, agrees on mesh-wide block policies through
Raft, and enforces them on each host.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newTestnetCmd(), newVersionCmd(), newRulesCmd(), newFirewallCmd(), newStoreCmd(), newIntelCmd(), newReportCmd())
	root.AddCommand(newAdminCmds()...)
	root.AddCommand(newAlertsCmd()) // cli_alerts.go
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the meshward version",
		Example: "  meshward version",
		Args:    cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "meshward", version)
		},
	}
}
