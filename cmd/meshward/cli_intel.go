// The intel noun: commands that work on threat intelligence on the
// operator's machine, without a node. `meshward intel extract` pulls
// indicators out of an advisory.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/intel/extract"
)

func newIntelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "intel",
		Short: "Work with threat intelligence: extract indicators from advisories; feeds, import and export",
	}
	cmd.AddCommand(newIntelExtractCmd())
	cmd.AddCommand(newIntelAttackCmd())
	cmd.AddCommand(newIntelFeedCmds()...)                                                   // cli_feeds.go: feeds, import
	cmd.AddCommand(withFeedExport(newIntelExportCmd()))                                     // export: stix (cli_stix.go); misp, csv, plain (cli_feeds.go)
	cmd.AddCommand(newFeedPolicyCmd(defaultCLIDeps()), newWarninglistCmd(defaultCLIDeps())) // cli_feedpolicy.go
	return cmd
}

func newIntelExtractCmd() *cobra.Command {
	var output string
	var pub publishOptions
	cmd := &cobra.Command{
		Use:   "extract FILE|-",
		Short: "Extract indicators from an advisory in plain text, Markdown or HTML",
		Long: `Extract reads an advisory (a file, or standard input for -) and prints the
indicators in it: IPv4 and IPv6 addresses, CIDR networks, domains (only under
a real public suffix), http and https URLs, e-mail addresses, MD5, SHA-1 and
SHA-256 hashes, CVE IDs and ATT&CK technique IDs.

Defanged forms are refanged (hxxp, [.], (.), [:], [at]) and HTML entities are
decoded. Values are canonical: lower-case domains and hashes, RFC 5952 IPv6,
CVE-2024-3400, T1059.001. Addresses in private, reserved or documentation
ranges are reported with a flag rather than dropped.

With -o json each indicator is one JSON object a line:
{"type":"ipv4","value":"198.51.100.7","line":12,"flag":"documentation"}`,
		Example: `  meshward intel extract advisory.html
  curl -s https://vendor.example/advisory.md | meshward intel extract - -o json
  meshward intel extract advisory.html --publish --confidence 60   # through a node: signed, observe-only reports`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			name := args[0]
			var in io.Reader = cmd.InOrStdin()
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return fmt.Errorf("intel extract: %w", err)
				}
				defer f.Close()
				in = f
			} else {
				name = "standard input"
			}
			if pub.publish {
				return runExtractPublish(cmd, in, name, output, &pub)
			}
			return runExtract(cmd.OutOrStdout(), in, name, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVar(&pub.publish, "publish", false, "publish the indicators through a node as signed, observe-only indicator reports (responder); flagged and warninglisted ones are never published")
	cmd.Flags().StringVar(&pub.source, "source", "", "the reports' source (default advisory:FILE)")
	cmd.Flags().IntVar(&pub.confidence, "confidence", 50, "the reports' confidence, 0 to 100")
	cmd.Flags().DurationVar(&pub.ttl, "ttl", 7*24*time.Hour, "how long the reports stay valid")
	pub.conn.registerConn(cmd)
	return cmd
}

// runExtract prints the indicators of in (called name in errors) as a
// table or as JSON lines.
func runExtract(out io.Writer, in io.Reader, name, output string) error {
	var e extract.Extractor
	var emit func(extract.Finding) error
	tw := newTable(out)
	if output == "json" {
		enc := json.NewEncoder(out)
		emit = func(f extract.Finding) error { return enc.Encode(f) }
	} else {
		fmt.Fprintln(tw, "LINE\tTYPE\tVALUE\tFLAG")
		emit = func(f extract.Finding) error {
			_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", f.Line, f.Type, f.Value, f.Flag)
			return err
		}
	}
	if err := e.Scan(in, emit); err != nil {
		return fmt.Errorf("intel extract %s: %w", name, err)
	}
	if output == "json" {
		return nil
	}
	return tw.Flush()
}
