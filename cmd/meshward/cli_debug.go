package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// pprofNames are the profiles `debug pprof` fetches.
var pprofNames = []string{"profile", "trace", "heap", "allocs", "goroutine", "block", "mutex", "threadcreate"}

func newDebugCmd() *cobra.Command {
	var f clientFlags
	cmd := nounCmd(&cobra.Command{
		Use:   "debug",
		Short: "Diagnose a running node",
		Example: `  meshward debug pprof heap -o heap.pb.gz
  meshward debug pprof profile --seconds 20 -o cpu.pb.gz`,
	}, nil)
	f.registerConn(cmd)
	f.output = "table"

	var file string
	var secs int
	pprof := &cobra.Command{
		Use:   "pprof PROFILE",
		Short: "Save a runtime profile of the node (admin token)",
		Long: `Fetch a runtime profile of the node from its admin API (an admin token is
needed) and save it to a file for go tool pprof: profile (CPU, over
--seconds, default 30), trace (an execution trace, go tool trace),
heap, allocs, goroutine, block, mutex or threadcreate (with --seconds, a
delta over that window). --seconds is at most 60. The file is written
whole or not at all.`,
		Example: `  meshward debug pprof heap -o heap.pb.gz
  meshward debug pprof profile --seconds 20 -o cpu.pb.gz && go tool pprof cpu.pb.gz
  meshward debug pprof goroutine --node https://10.0.0.5:7443 --token-file admin.token`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: pprofNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if secs < 0 || secs > 60 {
				return fmt.Errorf("--seconds %d: want 1 to 60 (0: the profile's own)", secs)
			}
			if file == "" {
				file = name + ".pb.gz"
				if name == "trace" {
					file = "trace.out"
				}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			tmp, err := os.CreateTemp(filepath.Dir(file), ".meshward-pprof-")
			if err != nil {
				return fmt.Errorf("save profile: %w", err)
			}
			defer os.Remove(tmp.Name()) // after the rename, nothing is there
			n, err := c.Profile(cmd.Context(), name, secs, tmp)
			if cerr := tmp.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("save profile: %w", cerr)
			}
			if err != nil {
				return apiErr(err)
			}
			if err := os.Rename(tmp.Name(), file); err != nil {
				return fmt.Errorf("save profile: %w", err)
			}
			tool := "go tool pprof " + file
			if name == "trace" {
				tool = "go tool trace " + file
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s profile (%d bytes) to %s; read it with %s\n", name, n, file, tool)
			return nil
		},
	}
	pprof.Flags().StringVarP(&file, "out", "o", "", "file to write (default PROFILE.pb.gz, trace.out for a trace)")
	pprof.Flags().IntVar(&secs, "seconds", 0, "how many seconds a CPU profile or trace runs, or a delta profile's window (1 to 60; default: the profile's own)")
	cmd.AddCommand(pprof)
	return cmd
}
