// The quarantine noun: `meshward quarantine HOST --ttl D --reason R`,
// `meshward quarantine list` and `meshward quarantine release HOST`.
// Quarantine and release are operator-signed commands (responder).
package main

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

func newQuarantineCmd(deps cliDeps) *cobra.Command {
	var f clientFlags
	setSigner := &signer{deps: deps}
	var (
		ttl    time.Duration
		reason string
	)
	cmd := &cobra.Command{
		Use:     "quarantine HOST --ttl D --reason R",
		Aliases: []string{"quarantines"},
		Short:   "Isolate a host mesh-wide, list and release quarantines (responder operator)",
		Long: `A quarantined host talks only to the mesh's management zones: every node
drops its other traffic, from and to it. A quarantine is a command signed
with an operator key (responder) and lasts --ttl from the moment it is
signed (0: until released, admin only). The mesh refuses a quarantine of a
member's address, a protected range, loopback, link-local, multicast or the
unspecified address. A zone may also let detection rules quarantine its
hosts automatically (meshward zone add --auto-quarantine).`,
		Example: `  meshward quarantine 10.1.0.66 --ttl 2h --reason "lateral movement from the office"
  meshward quarantine list
  meshward quarantine release 10.1.0.66`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			host, err := parseHost(args[0])
			if err != nil {
				return err
			}
			secs, err := seconds("ttl", ttl)
			if err != nil {
				return err
			}
			oc := intel.OperatorCommand{Op: intel.OpQuarantine, Host: host, TTLSeconds: secs, Reason: reason}
			return run(cmd, &f, func(c *admin.Client) (admin.OperatorResult, error) { return setSigner.submit(cmd.Context(), c, oc) }, printOperatorResult)
		},
	}
	f.register(cmd)
	fs := cmd.Flags()
	fs.DurationVar(&ttl, "ttl", time.Hour, "how long the quarantine lasts (up to 720h; 0: until released, admin only)")
	fs.StringVar(&reason, "reason", "", "why, for the audit and the other operators")
	setSigner.key.register(fs)

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the quarantines in force",
		Example: "  meshward quarantine list\n  meshward quarantine list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, &f, func(c *admin.Client) ([]intel.Quarantine, error) {
				qs, err := c.Quarantines(cmd.Context())
				return nonNilSlice(qs), err
			}, printQuarantines)
		},
	}

	relSigner := &signer{deps: deps}
	release := &cobra.Command{
		Use:     "release HOST",
		Short:   "End a host's quarantine",
		Example: "  meshward quarantine release 10.1.0.66",
		Args:    cobra.ExactArgs(1),
		RunE: signedCmd(&f, relSigner, func(_ *cobra.Command, args []string) (intel.OperatorCommand, error) {
			host, err := parseHost(args[0])
			if err != nil {
				return intel.OperatorCommand{}, err
			}
			return intel.OperatorCommand{Op: intel.OpRelease, Host: host}, nil
		}, nil),
	}
	relSigner.key.register(release.Flags())

	cmd.AddCommand(list, release)
	return cmd
}

// parseHost reads one IPv4 or IPv6 address.
func parseHost(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("host %q: want an IPv4 or IPv6 address", s)
	}
	return a.Unmap(), nil
}

func printQuarantines(w io.Writer, qs []intel.Quarantine) {
	fmt.Fprintln(w, "HOST\tZONE\tSINCE\tEXPIRES\tBY\tREASON")
	for _, q := range qs {
		exp := "until released"
		if !q.ExpiresAt.IsZero() {
			exp = q.ExpiresAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", q.Host, orDash(q.Zone), q.Since.UTC().Format(time.RFC3339), exp, q.By, orDash(q.Reason))
	}
}
