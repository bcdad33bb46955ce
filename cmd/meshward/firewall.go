package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/responders/nft"
)

func newFirewallCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firewall",
		Short: "Inspect or remove Meshward's nftables table on this host",
		Long: `Meshward enforces address and network blocks in an nftables table of its own
(inet meshward by default): sets of blocked addresses and networks with
per-element timeouts, and counted drop rules in the input and forward hooks.
These commands talk to the kernel directly (root or CAP_NET_ADMIN needed);
they never touch any other table.`,
	}
	cmd.AddCommand(newFirewallListCmd(), newFirewallTeardownCmd())
	return cmd
}

func openFirewall(table string) (*nft.Firewall, error) {
	return nft.New(nft.WithTable(table))
}

func newFirewallListCmd() *cobra.Command {
	var table, output string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the blocks Meshward's table holds and its drop counters",
		Example: "  meshward firewall list\n  meshward firewall list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			f, err := openFirewall(table)
			if err != nil {
				return err
			}
			defer f.Close()
			entries, err := f.List(cmd.Context())
			if errors.Is(err, nft.ErrNoTable) {
				return fmt.Errorf("no table inet %s on this host (is the agent running with the nftables responder?)", table)
			}
			if err != nil {
				return err
			}
			counters, err := f.Counters(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				type jsonEntry struct {
					Type    string `json:"type"`
					Value   string `json:"value"`
					Expires string `json:"expires_in,omitempty"`
					Nested  bool   `json:"nested,omitempty"`
				}
				out := struct {
					Table    string            `json:"table"`
					Entries  []jsonEntry       `json:"entries"`
					Counters []nft.RuleCounter `json:"counters"`
				}{Table: "inet " + table, Entries: []jsonEntry{}, Counters: counters}
				for _, e := range entries {
					je := jsonEntry{Type: string(e.Indicator.Type), Value: e.Indicator.Value, Nested: e.Nested}
					if e.Expires > 0 {
						je.Expires = e.Expires.Round(time.Second).String()
					}
					out.Entries = append(out.Entries, je)
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TYPE\tVALUE\tEXPIRES IN\tNOTE")
			for _, e := range entries {
				exp := "never"
				if e.Expires > 0 {
					exp = e.Expires.Round(time.Second).String()
				}
				note := ""
				if e.Nested {
					note = "inside a wider network"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Indicator.Type, e.Indicator.Value, exp, note)
			}
			fmt.Fprintln(tw)
			fmt.Fprintln(tw, "CHAIN\tSET\tPACKETS\tBYTES")
			for _, c := range counters {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", c.Chain, c.Set, c.Packets, c.Bytes)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&table, "table", nft.DefaultTable, "name of Meshward's inet table")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newFirewallTeardownCmd() *cobra.Command {
	var table string
	cmd := &cobra.Command{
		Use:   "teardown",
		Short: "Delete Meshward's nftables table (all its blocks) and nothing else",
		Long: `Delete the inet table Meshward created, with its sets, chains and counters.
Every other table is left alone. A running agent recreates the table on its
next reconcile pass, so stop the agent (or switch its nftables responder off)
first if the blocks are to stay gone.`,
		Example: "  meshward firewall teardown",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := openFirewall(table)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := f.Teardown(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "table inet %s removed\n", table)
			return nil
		},
	}
	cmd.Flags().StringVar(&table, "table", nft.DefaultTable, "name of Meshward's inet table")
	return cmd
}
