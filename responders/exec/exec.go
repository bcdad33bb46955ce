package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/atomicfile"
	"github.com/meshward/meshward/responders"
)

// Config configures a Command backend.
type Config struct {
	// Name distinguishes several exec backends (default "exec").
	Name string
	// Add and Remove are the commands run per indicator; Add is required,
	// an empty Remove means removals only forget the entry.
	Add, Remove []string
	// Types limits the indicator types handed to the backend (default
	// all).
	Types []intel.IndicatorType
	// Timeout bounds one run (default 30s).
	Timeout time.Duration
	// StatePath, if set, is a JSON file in which the backend keeps what it
	// added, so that removals survive a restart.
	StatePath string
}

// Stats counts the backend's runs.
type Stats struct {
	Runs     uint64
	Failures uint64 // non-zero exits, timeouts, commands not found
}

// Command is the exec backend.
type Command struct {
	cfg   Config
	types map[intel.IndicatorType]bool

	mu   sync.Mutex
	held map[string]intel.Indicator

	runs, failures atomic.Uint64
}

var (
	_ responders.Backend    = (*Command)(nil)
	_ responders.TypeFilter = (*Command)(nil)
)

// New validates cfg and loads the state file if there is one.
func New(cfg Config) (*Command, error) {
	if len(cfg.Add) == 0 || cfg.Add[0] == "" {
		return nil, errors.New("exec backend: Add command is required")
	}
	if cfg.Name == "" {
		cfg.Name = responders.DefaultExecName
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	c := &Command{cfg: cfg, held: make(map[string]intel.Indicator)}
	if len(cfg.Types) > 0 {
		c.types = make(map[intel.IndicatorType]bool)
		for _, t := range cfg.Types {
			c.types[t] = true
		}
	}
	if cfg.StatePath != "" {
		b, err := os.ReadFile(cfg.StatePath)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("exec backend: read state: %w", err)
		default:
			var list []intel.Indicator
			if err := json.Unmarshal(b, &list); err != nil {
				return nil, fmt.Errorf("exec backend: state %s: %w", cfg.StatePath, err)
			}
			for _, ind := range list {
				c.held[ind.Key()] = ind
			}
		}
	}
	return c, nil
}

// Name implements responders.Backend.
func (c *Command) Name() string { return c.cfg.Name }

// Supports implements responders.TypeFilter.
func (c *Command) Supports(t intel.IndicatorType) bool { return c.types == nil || c.types[t] }

// Stats returns the counters.
func (c *Command) Stats() Stats { return Stats{Runs: c.runs.Load(), Failures: c.failures.Load()} }

// Current implements responders.Backend: what the backend has added and
// not removed.
func (c *Command) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.held), nil
}

// Apply implements responders.Backend. Every command runs even if one
// fails; an entry is recorded only when its command succeeded.
func (c *Command) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	changed := false
	for _, ind := range remove {
		if _, ok := c.held[ind.Key()]; !ok {
			continue
		}
		if len(c.cfg.Remove) > 0 {
			if err := c.run(ctx, c.cfg.Remove, intel.Policy{Indicator: ind}); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		delete(c.held, ind.Key())
		changed = true
	}
	for _, p := range add {
		if !c.Supports(p.Indicator.Type) {
			continue
		}
		if err := c.run(ctx, c.cfg.Add, p); err != nil {
			errs = append(errs, err)
			continue
		}
		c.held[p.Indicator.Key()] = p.Indicator
		changed = true
	}
	if changed && c.cfg.StatePath != "" {
		list := slices.SortedFunc(maps.Values(c.held), func(a, b intel.Indicator) int { return strings.Compare(a.Key(), b.Key()) })
		b, err := json.MarshalIndent(list, "", "  ")
		if err == nil {
			err = atomicfile.Write(c.cfg.StatePath, b, 0o600)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("save state: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Args returns argv with the placeholders of p filled in.
func Args(argv []string, p intel.Policy) []string {
	expires := ""
	if !p.ExpiresAt.IsZero() {
		expires = p.ExpiresAt.UTC().Format(time.RFC3339)
	}
	r := strings.NewReplacer("{indicator}", p.Indicator.Value, "{type}", string(p.Indicator.Type),
		"{key}", p.Indicator.Key(), "{expires}", expires)
	out := make([]string, len(argv))
	named := false
	for i, a := range argv {
		named = named || strings.Contains(a, "{indicator}")
		out[i] = r.Replace(a)
	}
	if !named {
		out = append(out, p.Indicator.Value)
	}
	return out
}

func (c *Command) run(ctx context.Context, argv []string, p intel.Policy) error {
	args := Args(argv, p)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	cmd := osexec.CommandContext(ctx, args[0], args[1:]...)
	cmd.WaitDelay = time.Second
	c.runs.Add(1)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.failures.Add(1)
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timeout %v)", err, c.cfg.Timeout)
		}
		return fmt.Errorf("run %s for %s: %w: %s", args[0], p.Indicator.Key(), err, bytes.TrimSpace(out))
	}
	return nil
}
