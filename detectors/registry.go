package detectors

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/meshward/meshward/internal/confcheck"
)

// SourceFactory builds the source of one kind from the detectors section.
// It returns a nil Source when the section does not enable that kind.
type SourceFactory func(c Config) (Source, error)

// NamedSource is a source and the name of its kind ("files", "syslog").
type NamedSource struct {
	Name   string
	Source Source
}

// ReadySource is a source that binds something when Run starts (a
// listening socket). Ready is closed once it has done so or failed to;
// ReadyErr then reports a failure.
type ReadySource interface {
	Source
	Ready() <-chan struct{}
	ReadyErr() error
}

// The source kinds, registered by the file of each kind from its init
// through RegisterSource, and replaced only by tests (OverrideSource).
var (
	kindsMu sync.Mutex
	kinds   = map[string]SourceFactory{}
)

// RegisterSource makes a source kind known to NewSources. It is called
// from an init function, once per kind; a second registration of a name,
// an empty name or a nil factory panics.
func RegisterSource(name string, f SourceFactory) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if name == "" || f == nil {
		panic("detectors: RegisterSource needs a name and a factory")
	}
	if _, dup := kinds[name]; dup {
		panic(fmt.Sprintf("detectors: source kind %q registered twice", name))
	}
	kinds[name] = f
}

// OverrideSource registers f as the factory of name whether or not one is
// registered there (a nil f removes the kind), and returns the function
// that restores the previous state. It is for tests, which pass restore
// to t.Cleanup.
func OverrideSource(name string, f SourceFactory) (restore func()) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	prev, had := kinds[name]
	if f == nil {
		delete(kinds, name)
	} else {
		kinds[name] = f
	}
	return func() {
		kindsMu.Lock()
		defer kindsMu.Unlock()
		if had {
			kinds[name] = prev
		} else {
			delete(kinds, name)
		}
	}
}

// SourceKinds returns the names of the registered source kinds, sorted.
func SourceKinds() []string {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// NewSources validates the section and builds the source of every kind
// it enables, in the order of the kinds' names. It builds nothing when the
// section is disabled. No source runs until its Run is called.
func NewSources(c Config) ([]NamedSource, error) {
	if !c.Enabled {
		return nil, nil
	}
	if err := c.Validate(); err != nil {
		return nil, confcheck.Under("detectors", err)
	}
	var out []NamedSource
	for _, name := range SourceKinds() {
		kindsMu.Lock()
		f := kinds[name]
		kindsMu.Unlock()
		src, err := f(c)
		if err != nil {
			return nil, fmt.Errorf("detectors.%s: %w", name, err)
		}
		if src != nil {
			out = append(out, NamedSource{Name: name, Source: src})
		}
	}
	return out, nil
}

// WaitReady waits until src, when it is a ReadySource, has bound what it
// binds, and returns its ReadyErr; other sources are ready at once. It
// returns ctx's error if ctx ends first.
func WaitReady(ctx context.Context, src Source) error {
	rs, ok := src.(ReadySource)
	if !ok {
		return nil
	}
	select {
	case <-rs.Ready():
		return rs.ReadyErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}
