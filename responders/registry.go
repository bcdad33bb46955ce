package responders

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
)

// Deps are what backends need from the running node besides their
// section of the configuration.
type Deps struct {
	// Logger is the parent of each backend's logger (default: discard).
	Logger *slog.Logger
	// NetNS, when positive, is an open network namespace fd in which the
	// kernel firewall works instead of the process's own; the caller
	// keeps it open while the backends are.
	NetNS int
}

// Factory makes the backends registered under one name from the
// responders section. Build calls it only when the section enables that
// name (Config.Enabled). Its errors begin with the field they concern,
// relative to the section ("nftables: ...", "exec[1]: ...").
type Factory func(cfg Config, deps Deps) ([]Backend, error)

// The registry of backend factories: one door, Register, through which
// each backend package adds itself from init.
var registry = struct {
	sync.Mutex
	m map[string]Factory
}{m: map[string]Factory{}}

// Register makes a backend kind available to Build under name. Each
// backend package calls it once, from init; a second registration of a
// name, an empty name or a nil factory is a programming error and
// panics.
func Register(name string, f Factory) {
	registry.Lock()
	defer registry.Unlock()
	if name == "" || f == nil {
		panic("responders: Register needs a name and a factory")
	}
	if _, dup := registry.m[name]; dup {
		panic("responders: backend " + name + " registered twice")
	}
	registry.m[name] = f
}

// Override registers f under name whether or not a factory is registered
// there (a nil f removes the registration), and returns the function that
// restores the previous state. It is for tests; backendtest.Register
// wraps it with t.Cleanup.
func Override(name string, f Factory) (restore func()) {
	registry.Lock()
	defer registry.Unlock()
	prev, had := registry.m[name]
	if f == nil {
		delete(registry.m, name)
	} else {
		registry.m[name] = f
	}
	return func() {
		registry.Lock()
		defer registry.Unlock()
		if had {
			registry.m[name] = prev
		} else {
			delete(registry.m, name)
		}
	}
}

// Registered returns the names of the registered backends, sorted.
func Registered() []string {
	registry.Lock()
	defer registry.Unlock()
	names := make([]string, 0, len(registry.m))
	for n := range registry.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func factory(name string) (Factory, bool) {
	registry.Lock()
	defer registry.Unlock()
	f, ok := registry.m[name]
	return f, ok
}

// Backends are the backends Build made, in the order the reconciler
// drives them.
type Backends struct {
	List []Backend
	// DryRun is the dry-run backend when the section enables it, else nil.
	DryRun *DryRun
}

// Build makes every backend cfg enables (Config.Enabled), through the
// registered factories; the packages of the enabled backends must have
// been imported (responders/all imports every one). On error, the
// backends already made are closed. Nothing runs until the reconciler
// calls them.
func Build(cfg Config, deps Deps) (*Backends, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	out := &Backends{}
	for _, name := range cfg.Enabled() {
		f, ok := factory(name)
		if !ok {
			_ = out.Close()
			return nil, fmt.Errorf("responders.%s: no backend registered under this name (import its package, or responders/all)", name)
		}
		bs, err := f(cfg, deps)
		if err != nil {
			_ = out.Close()
			return nil, fmt.Errorf("responders.%w", err)
		}
		for _, b := range bs {
			if d, ok := b.(*DryRun); ok && out.DryRun == nil {
				out.DryRun = d
			}
		}
		out.List = append(out.List, bs...)
	}
	return out, nil
}

// Close closes every backend that has a Close method (io.Closer), last
// made first, and returns their errors joined. Backends keep what they
// enforce: a firewall table stays in place across a restart.
func (b *Backends) Close() error {
	var errs []error
	for _, be := range slices.Backward(b.List) {
		if c, ok := be.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", be.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}
