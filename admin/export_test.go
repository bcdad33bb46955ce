package admin

import "strings"

// RouteKeys lists "METHOD /pattern" for every registered route.
func RouteKeys() []string {
	var out []string
	for _, r := range (&Server{}).routes() {
		out = append(out, r.method+" "+strings.TrimSuffix(r.pattern, "{$}"))
	}
	return out
}
