package admin

import "strings"

// MaxBody and MaxOperatorBody are the body limits.
const (
	MaxBody         = maxBody
	MaxOperatorBody = maxOperatorBody
)

// RouteKeys lists "METHOD /pattern" for every registered route.
func RouteKeys() []string {
	var out []string
	for _, r := range (&Server{}).routes() {
		out = append(out, r.method+" "+strings.TrimSuffix(r.pattern, "{$}"))
	}
	return out
}

// RouteRole is one route and the least role it needs ("" for none).
type RouteRole struct {
	Method, Path string
	Role         Role
}

// RouteRoles lists every registered route with its role, the path's
// wildcards filled in.
func RouteRoles() []RouteRole {
	var out []RouteRole
	for _, r := range (&Server{}).routes() {
		p := strings.TrimSuffix(r.pattern, "{$}")
		for strings.Contains(p, "{") {
			i, j := strings.Index(p, "{"), strings.Index(p, "}")
			p = p[:i] + "x" + p[j+1:]
		}
		out = append(out, RouteRole{Method: r.method, Path: p, Role: r.role})
	}
	return out
}
