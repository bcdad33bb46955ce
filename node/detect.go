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
	sources []namedSource
	// syslog is also among sources when enabled.
	syslog *detectors.SyslogSource
	cfg    SyslogConfig
}

type namedSource struct {
	name string
	src  detectors.Source
}

// newDetectors loads the rule pack and makes the configured sources; nil
// when detection is off.
func newDetectors(c DetectorsConfig, allow []netip.Prefix) (*Detectors, error) {
	if !c.Enabled {
		return nil, nil
	}
	eng, err := newEngine(c, allow)
	if err != nil {
		return nil, err
	}
	d := &Detectors{cfg: c.Syslog}
	d.engine.Store(eng)
	if len(c.Paths) > 0 {
		d.add("files", &detectors.GlobSource{Patterns: c.Paths, FromStart: c.FromStart, PollInterval: c.PollInterval})
	}
	if c.Journald.Enabled {
		d.add("journald", &detectors.JournaldSource{Matches: c.Journald.Matches})
	}
	if sl := c.Syslog; sl.Enabled {
		d.syslog = &detectors.SyslogSource{UDPAddr: sl.UDP, TCPAddr: sl.TCP, MaxMessageBytes: sl.MaxMessageBytes,
			MaxConns: sl.MaxConns, IdleTimeout: sl.IdleTimeout}
		d.add("syslog", d.syslog)
	}
	return d, nil
}

// newEngine builds the rule engine: the built-in pack, the rules
// directory, the selection, and the allowlist (the protected ranges).
func newEngine(c DetectorsConfig, allow []netip.Prefix) (*detectors.Engine, error) {
	rs, err := detectors.LoadRules(c.RulesDir)
	if err == nil && len(c.Rules) > 0 {
		rs, err = rs.Select(c.Rules...)
	}
	if err != nil {
		return nil, fmt.Errorf("detectors: %w", err)
	}
	eng, err := detectors.NewRulesEngine(rs, detectors.EngineOptions{Allow: allow, MaxSources: c.MaxSources})
	if err != nil {
		return nil, fmt.Errorf("detectors: %w", err)
	}
	return eng, nil
}

func (d *Detectors) add(name string, src detectors.Source) {
	d.sources = append(d.sources, namedSource{name, src})
}

// swap puts eng in force for every line read from now on.
func (d *Detectors) swap(eng *detectors.Engine) { d.engine.Store(eng) }

// lineBuffer bounds the lines read ahead of the engine per source.
const lineBuffer = 256

// run feeds one source's lines to the engine in force, as detectors.Run
// does for a fixed engine: it returns nil when ctx ends or src stops
// cleanly, src's error when it fails, and waits for src either way.
func (d *Detectors) run(ctx context.Context, src detectors.Source, emit func(intel.Sighting)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan string, lineBuffer)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, lines) }()
	process := func(l string) { d.engine.Load().Process([]byte(l), emit) }
	for {
		select {
		case l := <-lines:
			process(l)
		case err := <-done:
			// The source stopped: what it queued is still ours.
			for drained := false; !drained; {
				select {
				case l := <-lines:
					process(l)
				default:
					drained = true
				}
			}
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("source: %w", err)
			}
			return nil
		case <-ctx.Done():
			cancel()
			<-done
			return nil
		}
	}
}

// start runs every source, each on its own so that one failing (a port in
// use, journalctl missing) does not stop the others, and waits until the
// syslog listener, if any, is bound.
func (n *Node) startDetectors(ctx context.Context, d *Detectors) error {
	for _, s := range d.sources {
		n.group.Go(func(ctx context.Context) {
			if err := d.run(ctx, s.src, n.onDetection); err != nil && ctx.Err() == nil {
				if errors.Is(err, detectors.ErrJournalctlMissing) {
					err = fmt.Errorf("detectors.journald is enabled but journalctl is not installed: %w", err)
				}
				n.log.Error("log source stopped", "source", s.name, "err", err)
			}
		})
	}
	if d.syslog == nil {
		return nil
	}
	select {
	case <-d.syslog.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	udp, tcp := d.syslog.Addrs()
	if (d.cfg.UDP != "" && udp == nil) || (d.cfg.TCP != "" && tcp == nil) {
		return fmt.Errorf("detectors.syslog: cannot listen on udp %q / tcp %q (see the log)", d.cfg.UDP, d.cfg.TCP)
	}
	n.log.Info("syslog listening", "udp", udp, "tcp", tcp)
	return nil
}

// SyslogAddrs are the syslog listener's bound addresses (nil when off).
func (n *Node) SyslogAddrs() (udp, tcp net.Addr) {
	if d := n.deps.Detectors; d != nil && d.syslog != nil {
		return d.syslog.Addrs()
	}
	return nil, nil
}
