package node

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/responders"
)

// ParseLogLevel maps log_level (debug, info, warn, error) to a level;
// anything else is info.
func ParseLogLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Reload applies what may change while the node runs: the detection rules
// (detectors.rules_dir, detectors.rules), the protected ranges (also the
// detectors' allowlist), log_level (through Options.LogLevel), the
// responders and the ATT&CK bundle (intel.attack_path, read again; the
// techniques of the rules in force are checked against it; a bundle that
// fails to load leaves the catalog in force and is counted in
// meshward_attack_load_failures_total, without refusing the reload). load reads and validates the new configuration (LoadConfig
// does both). Everything is built before anything changes: on any error
// the configuration in force stays, and the failure is returned, logged
// and counted (Stats.ReloadFailures, meshward_config_reload_failures_total).
// Other changes need a restart; they are logged and not applied. A new
// rule engine starts with empty windows.
func (n *Node) Reload(load func() (Config, error)) error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	err := n.reload(load)
	if err != nil {
		n.stats.reloadFailures.Add(1)
		n.log.Error("configuration reload refused; the configuration in force stays", "err", err)
		return err
	}
	n.stats.reloads.Add(1)
	return nil
}

func (n *Node) reload(load func() (Config, error)) error {
	if n.closed {
		return errors.New("reload: node closed")
	}
	cfg, err := load()
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("reload: config: %w", err)
	}
	old := n.live.Load().cfg
	next := old
	next.Protected = cfg.Protected
	next.LogLevel = cfg.LogLevel
	next.Detectors.RulesDir, next.Detectors.Rules = cfg.Detectors.RulesDir, cfg.Detectors.Rules
	next.Responders = cfg.Responders
	next.Intel = cfg.Intel
	if !reflect.DeepEqual(next, cfg) {
		n.log.Warn("configuration changes other than rules, protected, log_level, responders and intel need a restart; not applied")
	}
	protected := next.ProtectedPrefixes()

	// Build first.
	var eng *detectors.Engine
	if d := n.deps.Detectors; d != nil {
		if eng, err = newEngine(next.Detectors, protected, next.Corroboration.Distributed.partialOptions()); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	// The ATT&CK bundle is read again; one that fails to load leaves the
	// catalog in force (and does not refuse the reload).
	cat := n.deps.attack.get()
	if next.Intel.AttackPath == "" {
		cat = nil
	} else if c, err := loadCatalog(next.Intel.AttackPath, n.log); err != nil {
		n.deps.attack.loadFailures.Add(1)
		n.log.Error("ATT&CK catalog not reloaded; the catalog in force stays", "err", err)
	} else {
		cat = c
	}
	var resp *Responders
	if !reflect.DeepEqual(next.Responders, old.Responders) {
		if n.group == nil {
			return errors.New("reload: responders change on a node not started")
		}
		if resp, err = newResponders(next.Responders, n.deps.Options.NftablesNetNS, n.log); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}

	// Then switch.
	n.live.Store(&liveConfig{cfg: next, protected: protected})
	if eng != nil {
		n.deps.Detectors.swap(eng)
	}
	if lv := n.deps.Options.LogLevel; lv != nil {
		lv.Set(ParseLogLevel(next.LogLevel))
	}
	if resp != nil {
		n.swapResponders(resp, next.Responders)
	}
	n.deps.attack.set(cat, checkTechniques(cat, n.deps.Detectors.rules(), n.log))
	n.reconciler().Trigger()
	n.log.Info("configuration reloaded", "log_level", next.LogLevel, "protected", next.Protected)
	return nil
}

// swapResponders puts a new set of backends in force: a new reconciler
// over them starts, then the old one stops and its firewall handle closes
// (the kernel table stays, as on a restart).
func (n *Node) swapResponders(r *Responders, cfg responders.Config) {
	recon := responders.NewReconciler(n.state, r.List, responders.Options{
		Interval:   cfg.Resync,
		Logger:     n.log.With("part", "responders"),
		OnEnforced: n.onEnforced,
	})
	recon.Start(n.group.Context())
	n.respMu.Lock()
	old, oldResp := n.recon, n.deps.Responders
	n.recon, n.deps.Responders = recon, r
	n.respMu.Unlock()
	if err := old.Close(); err != nil {
		n.log.Warn("close the previous reconciler", "err", err)
	}
	if err := oldResp.Close(); err != nil {
		n.log.Warn("close the previous responders", "err", err)
	}
	recon.Trigger()
}

// reconciler is the reconciler in force.
func (n *Node) reconciler() *responders.Reconciler {
	n.respMu.RLock()
	defer n.respMu.RUnlock()
	return n.recon
}

// responders are the backends in force.
func (n *Node) responders() *Responders {
	n.respMu.RLock()
	defer n.respMu.RUnlock()
	return n.deps.Responders
}
