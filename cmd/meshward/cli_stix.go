package main

// meshward intel export: the node's intelligence in a standard format,
// through its admin API.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

// exportFormat writes a node's intelligence to w in one format.
type exportFormat func(cmd *cobra.Command, c *admin.Client, opts exportOptions, w io.Writer) error

// exportOptions are the export command's format options.
type exportOptions struct {
	tlp string
}

// exportFormats are the formats of meshward intel export, by name.
var exportFormats = map[string]exportFormat{
	"stix": exportSTIX,
}

func exportFormatNames() string {
	names := make([]string, 0, len(exportFormats))
	for n := range exportFormats {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func newIntelExportCmd() *cobra.Command {
	var f clientFlags
	var format, out string
	var opts exportOptions
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export the node's indicator reports, sightings and mesh-wide policies (STIX 2.1)",
		Long: `Export asks a node for what it holds — indicator reports and sightings (the
10000 most recent of each) and every mesh-wide policy in force — and writes
it in a standard format. With --format stix (the default) it is one STIX 2.1
bundle: indicator objects with their patterns, sighting objects that refer to
the indicator sighted and to the identity of the node that saw it,
attack-pattern objects for ATT&CK techniques linked by indicates
relationships, and with --tlp a TLP 2.0 marking on every object.

Ids are UUIDv5 of the content and times come from the data: exporting the
same data twice gives the same bytes. The bundle is streamed from the node to
the output; with -o it is written to a temporary file beside FILE and moved
into place only when complete. A viewer token is enough.`,
		Example: `  meshward intel export --format stix -o mesh.stix.json
  meshward intel export --tlp amber | jq '.objects | length'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ef, ok := exportFormats[format]
			if !ok {
				return fmt.Errorf("--format %q: want one of %s", format, exportFormatNames())
			}
			f.output = "table" // the client's output flag is not used
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if out == "" || out == "-" {
				return ef(cmd, c, opts, cmd.OutOrStdout())
			}
			return writeFileAtomic(out, func(w io.Writer) error { return ef(cmd, c, opts, w) })
		},
	}
	f.registerConn(cmd)
	cmd.Flags().StringVar(&format, "format", "stix", "output format: "+exportFormatNames())
	cmd.Flags().StringVarP(&out, "out", "o", "", "write to FILE instead of standard output")
	cmd.Flags().StringVar(&opts.tlp, "tlp", "", "mark every object with this TLP level (clear, green, amber, amber+strict, red)")
	return cmd
}

// exportSTIX streams the node's STIX 2.1 bundle to w.
func exportSTIX(cmd *cobra.Command, c *admin.Client, opts exportOptions, w io.Writer) error {
	if _, err := c.ExportSTIX(cmd.Context(), opts.tlp, w); err != nil {
		return fmt.Errorf("intel export: %w", apiErr(err))
	}
	return nil
}

// writeFileAtomic writes path through fn into a temporary file beside it,
// synced and renamed into place only when fn succeeds.
func writeFileAtomic(path string, fn func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("intel export: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if err := fn(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("intel export: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("intel export: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("intel export: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("intel export: %w", err)
	}
	return nil
}
