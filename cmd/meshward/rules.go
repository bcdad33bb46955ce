package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "List detection rules and test them on log files",
		Long: `Detection rules are data: YAML files that say which parsed log events count,
per what they are grouped, the threshold and window (or leaky bucket) that
makes a detection, and the ATT&CK technique it reports. The built-in pack is
embedded in the binary; a rules directory adds rules or replaces them by name.`,
	}
	cmd.AddCommand(newRulesListCmd(), newRulesTestCmd(), newRulesCoverageCmd(), newRulesTechniqueCmd())
	return cmd
}

func loadRuleSet(dir string, names []string) (*detectors.RuleSet, error) {
	rs, err := detectors.LoadRules(dir)
	if err != nil {
		return nil, err
	}
	if len(names) > 0 {
		return rs.Select(names...)
	}
	return rs, nil
}

func newRulesListCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the rules in effect (built-in pack plus a rules directory)",
		Example: "  meshward rules list\n  meshward rules list --rules-dir /etc/meshward/rules.d",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := loadRuleSet(dir, nil)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RULE\tTECHNIQUE\tSEVERITY\tCONFIDENCE\tTRIGGER\tORIGIN\tDESCRIPTION")
			for _, r := range rs.Rules() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Name, r.Technique, r.Severity, r.Confidence, trigger(r), rs.Origin(r.Name),
					strings.Join(strings.Fields(r.Description), " "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "rules-dir", "", "directory of *.yaml rule files that add to or override the built-in pack")
	return cmd
}

// trigger describes when a rule fires.
func trigger(r detectors.Rule) string {
	if a := r.Anomaly; a != nil {
		return fmt.Sprintf("anomaly of %s per %s", a.Key, cmpOr(a.Bucket, time.Minute))
	}
	if r.Bucket != nil {
		return fmt.Sprintf("bucket %d, leaks %g/s", r.Bucket.Capacity, r.Bucket.LeakRate)
	}
	what := "events"
	if r.Distinct != "" {
		what = "distinct " + r.Distinct
	}
	return fmt.Sprintf("%d %s in %s", r.Threshold, what, r.Window)
}

// detection aggregates the sightings of one rule about one source.
type detection struct {
	Source     string         `json:"source"`
	Rule       string         `json:"rule"`
	Technique  string         `json:"technique,omitempty"`
	Severity   intel.Severity `json:"severity,omitempty"`
	Confidence int            `json:"confidence"`
	Count      int            `json:"count"`     // events in the largest sighting
	Sightings  int            `json:"sightings"` // times the rule fired (once per cooldown)
	FirstSeen  time.Time      `json:"first_seen"`
	LastSeen   time.Time      `json:"last_seen"`
}

func newRulesTestCmd() *cobra.Command {
	var (
		dir, output string
		names       []string
		allow       []string
		maxLine     int
		resolve     bool
		resTimeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "test [flags] FILE",
		Short: "Run the rules over a log file offline and print what they detect",
		Long: `Runs the rules over FILE ("-" for standard input) as fast as it can be read,
with no node running, and prints one row per rule and source address: how
many events the largest sighting counted, how many times the rule fired, and
the first and last time. Classic syslog stamps carry no year: they are read
in the year of the file's modification time; stamps without a zone (nginx
and Apache error logs, Exim, MariaDB, PostgreSQL, vsftpd) in local time.

Every format the detectors read is recognised line by line, so a file may mix
them: syslog lines of OpenSSH, PAM (pam_unix, both tag forms), sudo, su,
Postfix, Dovecot, Exim, vsftpd, ProFTPD, Pure-FTPd, MySQL/MariaDB, PostgreSQL,
OpenVPN and kernel firewall logs; web access logs (combined format); nginx and
Apache error logs; Exim's main log; vsftpd's own log; and JSON lines of
Traefik and Caddy access logs, Kubernetes API audit events and AWS CloudTrail
records (one per line: jq -c '.Records[]').

Statistics (lines, events, malformed and cut lines, failures that name no
remote party such as sudo's, speed) go to standard error.

A source logged by host name (pam_unix's rhost, sshd with UseDNS, Pure-FTPd,
MySQL) is reported as a domain; --resolve also reports the addresses the name
resolves to, at half the confidence: a reverse-resolved name is chosen by the
owner of the attacker's reverse zone and may name someone else's host.`,
		Example: `  meshward rules test /var/log/auth.log
  meshward rules test --rule ssh-bruteforce --rule ssh-user-enum /var/log/auth.log
  meshward rules test --rules-dir ./rules.d -o json /var/log/nginx/access.log
  journalctl -t sshd -o short-iso | meshward rules test -
  jq -c '.Records[]' cloudtrail.json | meshward rules test --rule aws-console-bruteforce -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			rs, err := loadRuleSet(dir, names)
			if err != nil {
				return err
			}
			opts := detectors.EngineOptions{}
			for _, a := range allow {
				p, err := intel.ParsePrefix(a)
				if err != nil {
					return fmt.Errorf("--allow %q: %w", a, err)
				}
				opts.Allow = append(opts.Allow, p)
			}
			var in io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil {
					mod := fi.ModTime()
					opts.Now = func() time.Time { return mod }
				}
				in = f
			}
			if resolve {
				opts.Resolve = &detectors.ResolveOptions{Timeout: resTimeout}
			}
			eng, err := detectors.NewRulesEngine(rs, opts)
			if err != nil {
				return err
			}
			type key struct{ rule, src string }
			found := map[key]*detection{}
			var order []key
			emit := func(s intel.Sighting) {
				k := key{s.Detector, s.Indicator.Value}
				d := found[k]
				if d == nil {
					d = &detection{Source: s.Indicator.Value, Rule: s.Detector, Technique: s.Technique,
						Severity: s.Severity, Confidence: s.Confidence, FirstSeen: s.FirstSeen}
					found[k] = d
					order = append(order, k)
				}
				d.Sightings++
				d.Count = max(d.Count, s.Count)
				if s.FirstSeen.Before(d.FirstSeen) {
					d.FirstSeen = s.FirstSeen
				}
				if s.LastSeen.After(d.LastSeen) {
					d.LastSeen = s.LastSeen
				}
			}
			start := time.Now()
			ls, err := detectors.ReadLines(in, maxLine, func(line []byte) { eng.Process(line, emit) })
			if err != nil {
				return err
			}
			elapsed := time.Since(start)
			sort.SliceStable(order, func(i, j int) bool {
				a, b := found[order[i]], found[order[j]]
				if !a.FirstSeen.Equal(b.FirstSeen) {
					return a.FirstSeen.Before(b.FirstSeen)
				}
				if a.Rule != b.Rule {
					return a.Rule < b.Rule
				}
				return a.Source < b.Source
			})
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				for _, k := range order {
					if err := enc.Encode(found[k]); err != nil {
						return err
					}
				}
			} else {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SOURCE\tRULE\tTECHNIQUE\tCOUNT\tSIGHTINGS\tFIRST\tLAST")
				for _, k := range order {
					d := found[k]
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.Source, d.Rule, d.Technique, d.Count, d.Sightings,
						d.FirstSeen.Format(time.RFC3339), d.LastSeen.Format(time.RFC3339))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			st := eng.Stats()
			rate := float64(ls.Lines) / max(elapsed.Seconds(), 1e-9)
			fmt.Fprintf(cmd.ErrOrStderr(), "%d lines (%d cut at %d bytes), %d events, %d matched, %d malformed, %d allowed, %d local; %d detections in %d sightings; %s, %.0f lines/s\n",
				ls.Lines, ls.Truncated, effectiveMaxLine(maxLine), st.Parsed, st.Matched, st.Skipped, st.Allowed, st.Local, len(order), st.Fired,
				elapsed.Round(time.Millisecond), rate)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "rules-dir", "", "directory of *.yaml rule files that add to or override the built-in pack")
	f.StringSliceVar(&names, "rule", nil, "run only this rule (repeatable)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json (one object per detection)")
	f.StringSliceVar(&allow, "allow", nil, "address or prefix never reported (repeatable)")
	f.IntVar(&maxLine, "max-line-bytes", detectors.DefaultMaxLineBytes, "lines longer than this are cut and counted")
	f.BoolVar(&resolve, "resolve", false, "also report the addresses of sources logged by host name (DNS lookups, cached and rate-limited)")
	f.DurationVar(&resTimeout, "resolve-timeout", 2*time.Second, "bound of one DNS lookup with --resolve")
	return cmd
}

func effectiveMaxLine(n int) int {
	if n <= 0 {
		return detectors.DefaultMaxLineBytes
	}
	return n
}

// cmpOr is d, or def when d is zero (a rule's default left unset).
func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
