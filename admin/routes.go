package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// caller is the authenticated holder of a token.
type caller struct {
	id, name string
	role     Role
}

func (c caller) actor() string { return c.id + " (" + c.name + ")" }

// call is one request being served: who made it and, for the audit trail,
// what it acted on.
type call struct {
	r      *http.Request
	who    caller
	target string
	detail string
	// action, when set by the handler, names the change for the audit
	// trail instead of the route's action.
	action string
}

// handlerFunc serves one route; it returns the response body.
type handlerFunc func(s *Server, c *call) (any, error)

// route is one entry of the API. Role "" means no token is needed; Action
// names the change for the audit trail ("" for reads).
type route struct {
	method  string
	pattern string
	role    Role
	action  string
	handle  handlerFunc
}

type routeTable []route

// routes is every route of the API; openapi.yaml must describe exactly
// these.
func (s *Server) routes() routeTable {
	return routeTable{
		{"GET", "/v1/openapi.yaml", "", "", getOpenAPI},
		{"GET", "/v1/status", RoleViewer, "", getStatus},
		{"GET", "/v1/members", RoleViewer, "", getMembers},
		{"GET", "/v1/peers", RoleViewer, "", getPeers},
		{"GET", "/v1/policies", RoleViewer, "", getPolicies},
		{"GET", "/v1/policies/{id}", RoleViewer, "", getPolicy},
		{"POST", "/v1/local-decisions", RoleResponder, "local.block", postLocalDecision},
		{"DELETE", "/v1/local-decisions/{id}", RoleResponder, "local.delete", deleteLocalDecision},
		{"GET", "/v1/iocs", RoleViewer, "", getIOCs},
		{"GET", "/v1/iocs/{indicator}", RoleViewer, "", getIOC},
		{"GET", "/v1/attack/{technique}", RoleViewer, "", getAttack},
		{"GET", "/v1/reports", RoleViewer, "", getReports},
		{"POST", "/v1/reports", RoleResponder, "report.publish", postReport},
		{"GET", "/v1/feeds", RoleViewer, "", getFeeds},
		{"POST", "/v1/feeds", RoleAdmin, "feed.add", postFeed},
		{"DELETE", "/v1/feeds/{name}", RoleAdmin, "feed.remove", deleteFeed},
		{"POST", "/v1/feeds/{name}/sync", RoleAdmin, "feed.sync", postFeedSync},
		{"POST", "/v1/intel/import", RoleAdmin, "intel.import", postImport},
		{"GET", "/v1/intel/reports", RoleViewer, "", getIntelReports},
		{"GET", "/v1/sightings", RoleViewer, "", getSightings},
		{"GET", "/v1/query", RoleViewer, "", getQuery},
		{"GET", "/v1/export/stix", RoleViewer, "", getExportSTIX},
		{"GET", "/v1/detections", RoleViewer, "", getDetections},
		{"POST", "/v1/detections/{id}/ack", RoleResponder, "detection.ack", postAck},
		{"DELETE", "/v1/detections/{id}/ack", RoleResponder, "detection.unack", deleteAck},
		{"POST", "/v1/detections/{id}/assign", RoleResponder, "detection.assign", postAssign},
		{"POST", "/v1/detections/{id}/comments", RoleResponder, "detection.comment", postComment},
		// Server-Sent Events of detections, sightings and policy changes
		// (dashboard_events.go).
		{"GET", "/v1/events/stream", RoleViewer, "", getEventStream},
		// The ATT&CK coverage of the rules in force (dashboard_coverage.go).
		{"GET", "/v1/coverage", RoleViewer, "", getCoverage},
		// Continuous compliance of the kernel state (compliance.go).
		{"GET", "/v1/compliance", RoleViewer, "", getCompliance},
		{"GET", "/v1/alerts", RoleViewer, "", getAlerts},
		{"POST", "/v1/alerts/{id}/silence", RoleResponder, "alert.silence", postAlertSilence},
		{"GET", "/v1/audit", RoleViewer, "", getAudit},
		{"GET", "/v1/tokens", RoleAdmin, "", getTokens},
		{"POST", "/v1/tokens", RoleAdmin, "token.create", postToken},
		{"DELETE", "/v1/tokens/{id}", RoleAdmin, "token.revoke", deleteToken},
		// Process measurement (process.go).
		{"GET", "/v1/process", RoleViewer, "", getProcess},
		{"GET", "/v1/process/breaches", RoleViewer, "", getProcessBreaches},
		{"GET", "/v1/process/chart.svg", RoleViewer, "", getProcessChart},
		{"GET", "/v1/process/export", RoleViewer, "", getProcessExport},
		{"POST", "/v1/process-events", RoleResponder, "process.event", postProcessEvent},
		{"GET", "/v1/operator", RoleViewer, "", getOperator},
		// Segmentation (segment.go): set through operator commands.
		{"GET", "/v1/zones", RoleViewer, "", getZones},
		{"GET", "/v1/flows", RoleViewer, "", getFlows},
		{"GET", "/v1/quarantines", RoleViewer, "", getQuarantines},
		// The handler checks the token's role against the command's.
		{"POST", "/v1/operator/commands", RoleResponder, "operator.command", postOperatorCommand},
		// Runtime profiles (net/http/pprof), for diagnosis in the field.
		{"GET", "/debug/pprof/{$}", RoleAdmin, "debug.pprof", getPprofIndex},
		{"GET", "/debug/pprof/{name}", RoleAdmin, "debug.pprof", getPprof},
	}
}

func (rt routeTable) mux(s *Server) *http.ServeMux {
	mux := http.NewServeMux()
	for _, r := range rt {
		mux.Handle(r.method+" "+r.pattern, s.wrap(r))
	}
	return mux
}

// Bounds of a request body: maxBody for most routes; an operator command
// (up to intel.MaxBulkIndicators indicators) carries a signed body of up
// to intel.MaxOperatorBody bytes, in base64, with its key and signature.
const (
	maxBody         = 64 << 10
	maxOperatorBody = (intel.MaxOperatorBody+2)/3*4 + 1<<10
)

// bodyLimit is the body limit of a route.
func (rt route) bodyLimit() int64 {
	if rt.method == "POST" && rt.pattern == "/v1/operator/commands" {
		return maxOperatorBody
	}
	return maxBody
}

// wrap authenticates, authorizes, runs the handler, writes the response
// and the audit entry, and counts the outcome.
func (s *Server) wrap(rt route) http.Handler {
	name := rt.method + " " + rt.pattern
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := rt.bodyLimit()
		if r.ContentLength > limit {
			// Refused before authentication reads anything more.
			s.metrics.rejections.WithLabelValues(reasonBodyTooLarge).Inc()
			s.writeError(w, name, http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("request body of %d bytes is over the limit of %d bytes for %s", r.ContentLength, limit, name))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		c := &call{r: r}
		if rt.role != "" {
			// A bearer token, or a dashboard session (dashboard_session.go).
			who, tok, err := s.authenticateRequest(r)
			if ce := (*csrfError)(nil); errors.As(err, &ce) {
				s.csrfRefused(r, name, who, rt.action, ce)
				s.writeError(w, name, http.StatusForbidden, "forbidden", ce.Error())
				return
			}
			if err != nil {
				s.authFailed(r, name, tok, err)
				w.Header().Set("WWW-Authenticate", `Bearer realm="meshward"`)
				s.writeError(w, name, http.StatusUnauthorized, "unauthorized", "missing or invalid token")
				return
			}
			c.who = who
			if !who.role.Allows(rt.role) {
				s.metrics.authFailures.WithLabelValues("forbidden").Inc()
				msg := fmt.Sprintf("role %s may not %s %s (needs %s)", who.role, rt.method, r.URL.Path, rt.role)
				if rt.action != "" {
					s.audit(AuditEntry{Time: s.now().UTC(), Actor: who.actor(), Role: string(who.role), Action: rt.action,
						Target: r.PathValue("id"), Result: "denied", Error: msg, Status: http.StatusForbidden})
				}
				s.writeError(w, name, http.StatusForbidden, "forbidden", msg)
				return
			}
		}
		body, err := rt.handle(s, c)
		status := http.StatusOK
		if err != nil {
			var code string
			status, code = statusOf(err)
			if rj := (*rejection)(nil); errors.As(err, &rj) {
				s.metrics.rejections.WithLabelValues(rj.reason).Inc()
			}
			if status == http.StatusInternalServerError {
				s.log.Error("admin API request failed", "route", name, "actor", c.who.actor(), "err", err)
			}
			if action := c.auditAction(rt); action != "" {
				result := "error"
				if isDenied(err) {
					result = "denied"
				}
				s.audit(AuditEntry{Time: s.now().UTC(), Actor: c.who.actor(), Role: string(c.who.role), Action: action,
					Target: c.target, Detail: c.detail, Result: result, Error: err.Error(), Status: status})
			}
			s.writeError(w, name, status, code, err.Error())
			return
		}
		if sb, ok := body.(streamBody); ok {
			// Served first, so that the audit entry has its outcome.
			sw := &statusWriter{ResponseWriter: w}
			sb.h.ServeHTTP(sw, r)
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			if action := c.auditAction(rt); action != "" {
				e := AuditEntry{Time: s.now().UTC(), Actor: c.who.actor(), Role: string(c.who.role), Action: action,
					Target: c.target, Detail: c.detail, Result: "ok", Status: sw.status}
				if sw.status/100 != 2 {
					e.Result, e.Error = "error", http.StatusText(sw.status)
				}
				s.audit(e)
			}
			s.metrics.requests.WithLabelValues(name, codeLabel(sw.status)).Inc()
			return
		}
		if action := c.auditAction(rt); action != "" {
			s.audit(AuditEntry{Time: s.now().UTC(), Actor: c.who.actor(), Role: string(c.who.role), Action: action,
				Target: c.target, Detail: c.detail, Result: "ok", Status: status})
		}
		s.metrics.requests.WithLabelValues(name, codeLabel(status)).Inc()
		if raw, ok := body.(rawBody); ok {
			w.Header().Set("Content-Type", raw.contentType)
			w.WriteHeader(status)
			w.Write(raw.b)
			return
		}
		writeJSON(w, status, body)
	})
}

// auditAction names the change a call made for the audit trail.
func (c *call) auditAction(rt route) string {
	if c.action != "" && rt.action != "" {
		return c.action
	}
	return rt.action
}

// rawBody is a response that is not JSON.
type rawBody struct {
	contentType string
	b           []byte
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// authenticate returns the holder of a bearer token.
func (s *Server) authenticate(tok string) (caller, error) {
	id, secret, err := splitToken(tok)
	if err != nil {
		return caller{}, err
	}
	rec, err := s.tokenStore.Token(id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return caller{}, errUnknownToken
		}
		return caller{}, err
	}
	if !hashMatches(rec.Hash, id, secret) {
		return caller{}, errBadSecret
	}
	role := Role(rec.Role)
	if !role.Valid() {
		return caller{}, fmt.Errorf("token %s has unknown role %q", id, rec.Role)
	}
	return caller{id: rec.ID, name: rec.Name, role: role}, nil
}

func (s *Server) writeError(w http.ResponseWriter, route string, status int, code, msg string) {
	s.metrics.requests.WithLabelValues(route, codeLabel(status)).Inc()
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "encode response: " + err.Error(), Code: "internal"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// statusOf maps an error to its HTTP status and machine code.
func statusOf(err error) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, ErrForbidden), errors.Is(err, intel.ErrOperatorSignature):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, ErrTooLarge), errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, ErrInvalid), errors.Is(err, intel.ErrOperatorMalformed):
		return http.StatusBadRequest, "bad_request"
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, ErrRefused), errors.Is(err, store.ErrExists):
		return http.StatusConflict, "conflict"
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout"
	case errors.Is(err, context.Canceled):
		return 499, "canceled"
	}
	return http.StatusInternalServerError, "internal"
}

func codeLabel(status int) string { return fmt.Sprintf("%d", status) }
