package dns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/atomicfile"
	"github.com/meshward/meshward/responders"
)

// Config configures a Sinkhole. At least one of UnboundPath and RPZPath
// is required.
type Config struct {
	// UnboundPath is the include file for Unbound's server clause.
	UnboundPath string
	// RPZPath is the RPZ zone file; RPZOrigin its zone name (default
	// "rpz.meshward.").
	RPZPath   string
	RPZOrigin string
	// Reload is the command run after the files change (argv, no shell),
	// e.g. ["unbound-control", "reload"]. Empty: no reload.
	Reload []string
	// ReloadTimeout bounds the reload command (default 30s).
	ReloadTimeout time.Duration
	// Now is the clock used for the RPZ serial (default time.Now).
	Now func() time.Time
}

// Stats counts the sinkhole's work.
type Stats struct {
	Writes        uint64 // times the files were rewritten
	Reloads       uint64 // reload commands that succeeded
	ReloadFailure uint64 // reload commands that failed or timed out
}

// Sinkhole is the DNS backend.
type Sinkhole struct {
	cfg Config
	mu  sync.Mutex
	// reloadPending is set while the files are newer than what the
	// resolver has loaded (the last reload failed).
	reloadPending bool

	writes, reloads, reloadFailures atomic.Uint64
}

var (
	_ responders.Backend    = (*Sinkhole)(nil)
	_ responders.TypeFilter = (*Sinkhole)(nil)
)

// New validates cfg and returns the backend. It writes nothing until
// Apply.
func New(cfg Config) (*Sinkhole, error) {
	if cfg.UnboundPath == "" && cfg.RPZPath == "" {
		return nil, errors.New("dns sinkhole: set UnboundPath, RPZPath or both")
	}
	if cfg.RPZOrigin == "" {
		cfg.RPZOrigin = "rpz.meshward."
	}
	if !strings.HasSuffix(cfg.RPZOrigin, ".") {
		cfg.RPZOrigin += "."
	}
	if cfg.ReloadTimeout <= 0 {
		cfg.ReloadTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sinkhole{cfg: cfg}, nil
}

// Name implements responders.Backend.
func (s *Sinkhole) Name() string { return "dns" }

// Supports implements responders.TypeFilter: domains only.
func (s *Sinkhole) Supports(t intel.IndicatorType) bool { return t == intel.Domain }

// Stats returns the counters.
func (s *Sinkhole) Stats() Stats {
	return Stats{Writes: s.writes.Load(), Reloads: s.reloads.Load(), ReloadFailure: s.reloadFailures.Load()}
}

// Current implements responders.Backend: the domains in every configured
// file. A domain missing from one file counts as missing, so that the
// next Apply rewrites both.
//
// While a failed reload is pending, Current reports nothing, so that the
// next pass calls Apply again, which retries the reload.
func (s *Sinkhole) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reloadPending {
		return map[string]intel.Indicator{}, nil
	}
	return s.read()
}

func (s *Sinkhole) read() (map[string]intel.Indicator, error) {
	var sets []map[string]intel.Indicator
	if s.cfg.UnboundPath != "" {
		m, err := readFile(s.cfg.UnboundPath, parseUnbound)
		if err != nil {
			return nil, err
		}
		sets = append(sets, m)
	}
	if s.cfg.RPZPath != "" {
		m, err := readFile(s.cfg.RPZPath, s.parseRPZ)
		if err != nil {
			return nil, err
		}
		sets = append(sets, m)
	}
	out := sets[0]
	for _, m := range sets[1:] {
		for k := range out {
			if _, ok := m[k]; !ok {
				delete(out, k)
			}
		}
	}
	return out, nil
}

func readFile(path string, parse func(line string) (string, bool)) (map[string]intel.Indicator, error) {
	out := make(map[string]intel.Indicator)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		d, ok := parse(strings.TrimSpace(sc.Text()))
		if !ok {
			continue
		}
		ind, err := intel.NewIndicator(intel.Domain, d)
		if err != nil {
			continue
		}
		out[ind.Key()] = ind
	}
	return out, nil
}

// parseUnbound reads `local-zone: "example.com." always_nxdomain`.
func parseUnbound(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "local-zone:")
	if !ok {
		return "", false
	}
	f := strings.Fields(rest)
	if len(f) != 2 || f[1] != "always_nxdomain" {
		return "", false
	}
	return strings.Trim(f[0], `"`), true
}

// parseRPZ reads `example.com CNAME .` (the wildcard twin is implied).
func (s *Sinkhole) parseRPZ(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[1] != "CNAME" || f[2] != "." || strings.HasPrefix(f[0], "*.") || strings.HasPrefix(f[0], "@") {
		return "", false
	}
	return f[0], true
}

// Apply implements responders.Backend: it rewrites the files with the new
// set of domains and runs the reload command. A failed reload fails Apply
// (the files stay written; until a reload succeeds Current reports
// nothing, so the next pass applies and reloads again).
func (s *Sinkhole) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.read()
	if err != nil {
		return err
	}
	for _, ind := range remove {
		delete(cur, ind.Key())
	}
	for _, p := range add {
		if p.Indicator.Type != intel.Domain {
			continue
		}
		if err := p.Indicator.Validate(); err != nil {
			return fmt.Errorf("add %s: %w", p.Indicator.Key(), err)
		}
		cur[p.Indicator.Key()] = p.Indicator
	}
	domains := make([]string, 0, len(cur))
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		domains = append(domains, cur[k].Value)
	}
	if s.cfg.UnboundPath != "" {
		if err := atomicfile.Write(s.cfg.UnboundPath, UnboundConfig(domains), 0o644); err != nil {
			return err
		}
	}
	if s.cfg.RPZPath != "" {
		if err := atomicfile.Write(s.cfg.RPZPath, RPZZone(s.cfg.RPZOrigin, uint32(s.cfg.Now().Unix()), domains), 0o644); err != nil {
			return err
		}
	}
	s.writes.Add(1)
	err = s.reload(ctx)
	s.reloadPending = err != nil
	return err
}

func (s *Sinkhole) reload(ctx context.Context) error {
	if len(s.cfg.Reload) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReloadTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.cfg.Reload[0], s.cfg.Reload[1:]...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.reloadFailures.Add(1)
		return fmt.Errorf("reload resolver (%s): %w: %s", strings.Join(s.cfg.Reload, " "), err, bytes.TrimSpace(out))
	}
	s.reloads.Add(1)
	return nil
}

// UnboundConfig renders the Unbound include file for domains.
func UnboundConfig(domains []string) []byte {
	var b bytes.Buffer
	b.WriteString("# Generated by meshward: DNS sinkhole. Do not edit; changes are overwritten.\nserver:\n")
	for _, d := range domains {
		fmt.Fprintf(&b, "local-zone: \"%s.\" always_nxdomain\n", d)
	}
	return b.Bytes()
}

// RPZZone renders an RPZ zone answering NXDOMAIN for each domain and
// every name below it.
func RPZZone(origin string, serial uint32, domains []string) []byte {
	var b bytes.Buffer
	b.WriteString("; Generated by meshward: DNS sinkhole. Do not edit; changes are overwritten.\n")
	b.WriteString("$ORIGIN " + origin + "\n$TTL 60\n")
	b.WriteString("@ IN SOA localhost. hostmaster.localhost. " + strconv.FormatUint(uint64(serial), 10) + " 3600 600 86400 60\n")
	b.WriteString("@ IN NS localhost.\n")
	for _, d := range domains {
		fmt.Fprintf(&b, "%s CNAME .\n*.%s CNAME .\n", d, d)
	}
	return b.Bytes()
}
