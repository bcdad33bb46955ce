package admin

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests      *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	auditFailures prometheus.Counter
	rejections    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshward", Subsystem: "admin", Name: "requests_total",
			Help: "Admin API requests by route and HTTP status.",
		}, []string{"route", "code"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshward", Subsystem: "admin", Name: "auth_failures_total",
			Help: "Admin API requests refused: 401 by reason (missing_token, malformed_token, unknown_token, bad_secret, error) or 403 (forbidden).",
		}, []string{"reason"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshward", Subsystem: "admin", Name: "audit_failures_total",
			Help: "Audit entries that could not be written.",
		}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshward", Subsystem: "admin", Name: "requests_rejected_total",
			Help: "Admin API requests refused for what they asked, by reason (body_too_large, bad_limit, bad_cursor, profile_seconds, unknown_profile).",
		}, []string{"reason"}),
	}
	for _, r := range rejectReasons {
		m.rejections.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.authFailures, m.auditFailures, m.rejections)
	}
	return m
}
