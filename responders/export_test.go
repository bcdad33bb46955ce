package responders

import "context"

// DeltaPass runs one pass that is not full: backends that are not stale
// get only the change. It is the loop's pass on a Trigger.
func (r *Reconciler) DeltaPass(ctx context.Context) error {
	_, err := r.pass(ctx, false)
	return err
}
