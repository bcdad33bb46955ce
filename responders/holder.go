package responders

import (
	"context"

	"github.com/meshward/meshward/intel"
)

// Holder is an optional interface for a backend that can tell whether it
// holds one entry without copying everything it holds, as Current must:
// a question about one indicator then costs a look-up, however many
// entries the backend holds.
type Holder interface {
	Holds(ctx context.Context, ind intel.Indicator) (bool, error)
}

var _ Holder = (*DryRun)(nil)

// Holds implements Holder.
func (d *DryRun) Holds(_ context.Context, ind intel.Indicator) (bool, error) { return d.Has(ind), nil }
