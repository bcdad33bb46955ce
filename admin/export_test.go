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
