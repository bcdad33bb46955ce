package detectors

import (
	"context"
	"errors"
	"sync"
)

// MultiSource runs several sources at once into one channel, so that one
// engine reads them all. A source that ends without error leaves the
// others running; the first one that fails stops them all.
type MultiSource []Source

var _ Source = MultiSource(nil)

// Run runs every source until ctx ends, all of them have ended, or one
// fails. It returns once every source has returned, with the error of the
// first that failed, joined (errors.Join) with those of any others that
// failed before they were told to stop.
func (m MultiSource) Run(ctx context.Context, out chan<- string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, src := range m {
		wg.Go(func() {
			if err := src.Run(ctx, out); err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
