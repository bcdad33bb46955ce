package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
)

// Defaults of the admin CLI.
const (
	defaultAdminSocket = "/var/lib/meshward/admin.sock"
	envNode            = "MESHWARD_NODE"
	envToken           = "MESHWARD_TOKEN"
)

// newAdminCmds returns the operator's commands, each a client of a node's
// admin API.
func newAdminCmds() []*cobra.Command { return newAdminCmdsWith(defaultCLIDeps()) }

// newAdminCmdsWith is newAdminCmds with the given clock and randomness.
func newAdminCmdsWith(deps cliDeps) []*cobra.Command {
	return []*cobra.Command{
		newStatusCmd(), newMembersCmd(deps), newPeersCmd(), newPolicyCmd(deps),
		newIOCsCmd(), newSightingsCmd(), newDetectionsCmd(), newAuditCmd(),
		newTokenCmd(deps), newConfigCmd(), newOperatorCmd(deps), newProtectCmd(deps), newMeshCmd(deps), newDebugCmd(), newQueryCmd(),
		newZoneCmd(deps), newFlowCmd(deps), newQuarantineCmd(deps), // cli_segment.go, cli_quarantine.go
		newComplianceCmd(), // cli_compliance.go
	}
}

// clientFlags are the flags every admin command shares.
type clientFlags struct {
	node      string
	tokenFile string
	caFile    string
	output    string
	timeout   time.Duration
}

// register adds the shared flags to a noun command and its verbs.
func (f *clientFlags) register(cmd *cobra.Command) {
	f.registerConn(cmd)
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
}

// registerConn adds the flags that reach a node (all the shared flags but
// --output) to a noun command and its verbs.
func (f *clientFlags) registerConn(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	node := os.Getenv(envNode)
	if node == "" {
		node = defaultAdminSocket
	}
	pf.StringVar(&f.node, "node", node, "admin API of the node: a Unix socket path or https://host:port (env "+envNode+")")
	pf.StringVar(&f.tokenFile, "token-file", "", "file holding the API token (default: $"+envToken+", else admin.token beside the socket)")
	pf.StringVar(&f.caFile, "ca-cert", "", "PEM CA bundle to verify an https node's certificate")
	pf.DurationVar(&f.timeout, "timeout", 2*time.Minute, "how long to wait for the node")
}

// token finds the API token: --token-file, then $MESHWARD_TOKEN, then the
// local admin token beside a Unix socket. "" if there is none.
func (f *clientFlags) token() (string, error) {
	if f.tokenFile != "" {
		return admin.ReadTokenFile(f.tokenFile)
	}
	if t := strings.TrimSpace(os.Getenv(envToken)); t != "" {
		return t, nil
	}
	if admin.IsUnixTarget(f.node) {
		if t, err := admin.ReadTokenFile(admin.DefaultTokenFile(f.node)); err == nil {
			return t, nil
		}
	}
	return "", nil
}

// client validates the output flag and returns a client of the node.
func (f *clientFlags) client() (*admin.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("--output %q: want table or json", f.output)
	}
	tok, err := f.token()
	if err != nil {
		return nil, err
	}
	c, err := admin.NewClient(f.node, tok, admin.ClientOptions{CAFile: f.caFile, Timeout: f.timeout})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// apiErr turns an API error into one line for the operator.
func apiErr(err error) error {
	var ae *admin.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Status {
	case 401:
		return fmt.Errorf("%s (HTTP 401): set %s or --token-file, or run as the node's owner to use its local admin token", ae.Message, envToken)
	case 403:
		return fmt.Errorf("permission denied: %s (HTTP 403)", ae.Message)
	}
	return fmt.Errorf("%s (HTTP %d)", ae.Message, ae.Status)
}

// run builds a client, calls fn and prints what it returns: as JSON with
// -o json, else with table.
func run[T any](cmd *cobra.Command, f *clientFlags, fn func(*admin.Client) (T, error), table func(io.Writer, T)) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := fn(c)
	if err != nil {
		return apiErr(err)
	}
	out := cmd.OutOrStdout()
	if f.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := newTable(out)
	table(tw, v)
	return tw.Flush()
}

// newTable returns the writer that aligns a table's columns.
func newTable(out io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(out, 0, 4, 2, ' ', 0) }

// timeCell formats a time for a table.
func timeCell(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func expiresCell(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return timeCell(t)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// short abbreviates a node ID for a table (its last 8 characters, as the
// logs do); -o json shows it whole.
func short(id string) string {
	if len(id) > 12 {
		return "…" + id[len(id)-8:]
	}
	return orDash(id)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// truncate shortens s to n runes for a table cell.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// nounCmd makes cmd a noun that groups verbs: run without one, it prints
// its help. f, when not nil, receives the client flags its verbs share.
func nounCmd(cmd *cobra.Command, f *clientFlags) *cobra.Command {
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	if f != nil {
		f.register(cmd)
	}
	return cmd
}
