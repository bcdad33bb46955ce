package detectors

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/meshward/meshward/intel"
)

// lineBuffer is the queue between a source and the engine in Run.
const lineBuffer = 256

// Processor takes log lines one at a time; *Engine is one. A caller that
// replaces its engine at run time passes a Processor that hands each line
// to the engine in force.
type Processor interface {
	// Process handles one line and calls emit for every sighting it
	// causes. It must not keep line.
	Process(line []byte, emit func(intel.Sighting))
}

var _ Processor = (*Engine)(nil)

// Run feeds the lines of src to p and calls emit, from Run's goroutine,
// for every sighting. It returns nil when ctx ends or src stops cleanly,
// and src's error when it fails; it waits for src to return either way.
func Run(ctx context.Context, src Source, p Processor, emit func(intel.Sighting)) error {
	process := func(l string) {
		p.Process(unsafe.Slice(unsafe.StringData(l), len(l)), emit)
	}
	if eng, ok := p.(*Engine); ok {
		process = func(l string) { eng.process(l, emit) }
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan string, lineBuffer)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, lines) }()
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
