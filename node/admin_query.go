package node

import (
	"context"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/query"
)

var _ admin.QueryService = statusAPI{}

// MeshQuery asks the whole mesh (Node.Query) for the admin API's
// /v1/query.
func (a statusAPI) MeshQuery(ctx context.Context, req query.Request, timeout time.Duration) (any, error) {
	rs, err := a.n.Query(ctx, req, timeout)
	if err != nil {
		return nil, err
	}
	summary := make(map[string]int)
	for _, r := range rs {
		summary[string(r.Status)]++
	}
	return admin.QueryResponse{Kind: req.Kind, Value: req.Indicator + req.Policy, Timeout: timeout.String(), Summary: summary, Results: rs}, nil
}
