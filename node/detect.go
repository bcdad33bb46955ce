package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel"
)

// Detectors are a node's rule engine and the log sources that feed it.
// The engine can be replaced at run time (Reload); the sources keep
// running and feed whichever engine is in force.
type Detectors struct {
	engine  atomic.Pointer[detectors.Engine]
	sources []detectors.NamedSource
	anomaly anomalyCounters // anomaly.go
}

// newDetectors loads the rule pack and makes the configured sources
// through the detectors registry; nil when detection is off.
func newDetectors(c detectors.Config, allow []netip.Prefix, partial *detectors.PartialOptions) (*Detectors, error) {
	if !c.Enabled {
		return nil, nil
	}
	eng, err := newEngine(c, allow, partial)
	if err != nil {
		return nil, err
	}
	srcs, err := detectors.NewSources(c)
	if err != nil {
		return nil, fmt.Errorf("detectors: %w", err)
	}
	d := &Detectors{sources: srcs}
	d.engine.Store(eng)
	return d, nil
}

// newEngine builds the rule engine: the built-in pack, the rules
// directory, the selection, the allowlist (the protected ranges) and the
// sub-threshold summaries (nil: off).
func newEngine(c detectors.Config, allow []netip.Prefix, partial *detectors.PartialOptions) (*detectors.Engine, error) {
	rs, err := detectors.LoadRules(c.RulesDir)
	if err == nil && len(c.Rules) > 0 {
		rs, err = rs.Select(c.Rules...)
	}
	if err != nil {
		return nil, fmt.Errorf("detectors: %w", err)
	}
	eng, err := detectors.NewRulesEngine(rs, detectors.EngineOptions{Allow: allow, MaxSources: c.MaxSources, Resolve: c.ResolveHosts.Options(), Partial: partial})
	if err != nil {
		return nil, fmt.Errorf("detectors: %w", err)
	}
	return eng, nil
}

// rules are the rules in force; none when d is nil (detection off).
func (d *Detectors) rules() []detectors.Rule {
	if d == nil {
		return nil
	}
	return d.engine.Load().Rules()
}

// swap puts eng in force for every line read from now on, with the
// baselines its anomaly rules share with the engine it replaces.
func (d *Detectors) swap(eng *detectors.Engine) {
	if st, err := d.engine.Load().AnomalyState(); err == nil && st != nil {
		restored, skipped, _ := eng.RestoreAnomalies(st)
		d.anomaly.restored.Add(uint64(restored))
		d.anomaly.skipped.Add(uint64(skipped))
	}
	d.engine.Store(eng)
}

// Process hands a line to the engine in force (detectors.Processor).
func (d *Detectors) Process(line []byte, emit func(intel.Sighting)) {
	d.engine.Load().Process(line, emit)
}

var _ detectors.Processor = (*Detectors)(nil)

// startDetectors runs every source, each on its own so that one failing
// (a port in use, journalctl missing) does not stop the others, and waits
// until those that bind something (the syslog listener) are bound.
func (n *Node) startDetectors(ctx context.Context, d *Detectors) error {
	n.keepAnomalies(d) // anomaly.go
	for _, s := range d.sources {
		n.group.Go(func(ctx context.Context) {
			if err := detectors.Run(ctx, s.Source, d, n.onDetection); err != nil && ctx.Err() == nil {
				if errors.Is(err, detectors.ErrJournalctlMissing) {
					err = fmt.Errorf("detectors.journald is enabled but journalctl is not installed: %w", err)
				}
				n.log.Error("log source stopped", "source", s.Name, "err", err)
			}
		})
	}
	for _, s := range d.sources {
		if err := detectors.WaitReady(ctx, s.Source); err != nil {
			return fmt.Errorf("detectors.%s: %w", s.Name, err)
		}
	}
	if udp, tcp := n.SyslogAddrs(); udp != nil || tcp != nil {
		n.log.Info("syslog listening", "udp", udp, "tcp", tcp)
	}
	return nil
}

// SyslogAddrs are the syslog listener's bound addresses (nil when off).
func (n *Node) SyslogAddrs() (udp, tcp net.Addr) {
	if d := n.deps.Detectors; d != nil {
		for _, s := range d.sources {
			if a, ok := s.Source.(interface{ Addrs() (udp, tcp net.Addr) }); ok {
				return a.Addrs()
			}
		}
	}
	return nil, nil
}
