package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/node"
)

func newConfigCmd() *cobra.Command {
	cmd := nounCmd(&cobra.Command{
		Use:     "config",
		Short:   "Work with node configuration files",
		Example: "  meshward config validate /etc/meshward/node.yaml",
	}, nil)
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a node configuration file; print every problem, one per line",
		Long: `Check a node configuration file as meshward agent would: unknown fields,
wrong types and invalid values. Every problem is printed on its own line and
the exit status is 1 if there is any. No node is contacted.`,
		Example: "  meshward config validate /etc/meshward/node.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("read config: %w", err)
			}
			if _, err := node.ParseConfig(b); err != nil {
				for _, e := range flattenErrors(err) {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", path, e)
				}
				return exitError{fmt.Errorf("config %s is invalid", path)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return nil
		},
	}
	cmd.AddCommand(validate)
	return cmd
}

// flattenErrors lists the leaves of joined errors, one line each.
func flattenErrors(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			if e != nil {
				out = append(out, flattenErrors(e)...)
			}
		}
		return out
	}
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
