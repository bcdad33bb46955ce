package node

import (
	"context"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/alert"
)

var _ admin.AlertService = statusAPI{}

// Alerts lists the node's alerts, firing and recent.
func (a statusAPI) Alerts(context.Context) (admin.AlertList, error) {
	active, recent := a.n.alerts.engine.Alerts()
	return admin.AlertList{Active: active, Recent: recent}, nil
}

// SilenceAlert silences an alert of this node's until the given time.
func (a statusAPI) SilenceAlert(_ context.Context, id string, until time.Time) (alert.Alert, error) {
	return a.n.alerts.engine.Silence(id, until)
}
