package admin_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
)

// TestEveryRouteRefusesLowerRoles: every route that needs a token refuses
// a request without one (401) and one with a token of a lower role (403),
// each counted in meshward_admin_auth_failures_total, before its handler
// runs; nothing is changed.
func TestEveryRouteRefusesLowerRoles(t *testing.T) {
	reg := prometheus.NewRegistry()
	node := admintest.NewNode(nodeID)
	env := admintest.Start(t, node, admin.Options{Registerer: reg})
	tokens := map[admin.Role]string{
		admin.RoleViewer:    env.NewToken(t, admin.RoleViewer, "ro").Secret,
		admin.RoleResponder: env.NewToken(t, admin.RoleResponder, "oncall").Secret,
	}
	lower := map[admin.Role][]admin.Role{
		admin.RoleResponder: {admin.RoleViewer},
		admin.RoleAdmin:     {admin.RoleViewer, admin.RoleResponder},
	}
	commands := len(node.Commands())
	missing, forbidden := 0, 0
	for _, r := range admin.RouteRoles() {
		if r.Role == "" {
			continue
		}
		if status, body := rawRequest(t, env.Socket, r.Method, r.Path, "", `{}`); status != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d %s, want 401", r.Method, r.Path, status, body)
		}
		missing++
		for _, role := range lower[r.Role] {
			if status, body := rawRequest(t, env.Socket, r.Method, r.Path, tokens[role], `{}`); status != http.StatusForbidden {
				t.Errorf("%s %s as %s (needs %s): %d %s, want 403", r.Method, r.Path, role, r.Role, status, body)
			}
			forbidden++
		}
	}
	if forbidden == 0 || missing < 20 {
		t.Fatalf("%d routes checked, %d lower-role requests: the route table was not read", missing, forbidden)
	}
	got := authFailures(t, reg)
	if got["missing_token"] != missing || got["forbidden"] != forbidden {
		t.Errorf("counted %v, want missing_token %d and forbidden %d", got, missing, forbidden)
	}
	if len(node.Commands()) != commands {
		t.Error("a refused request reached the node")
	}
}
