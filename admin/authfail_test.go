package admin_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
)

// authFailures reads meshward_admin_auth_failures_total by reason.
func authFailures(t *testing.T, reg *prometheus.Registry) map[string]int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "meshward_admin_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}

// TestAuthFailuresAudited: a stream of requests with bad or missing
// tokens gives one audit entry per minute of the socket, whose counts add
// up to every failure, while the metric counts each failure by reason.
func TestAuthFailuresAudited(t *testing.T) {
	var clock atomic.Int64
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	reg := prometheus.NewRegistry()
	env := admintest.Start(t, admintest.NewNode(nodeID), admin.Options{Registerer: reg, Now: now})

	id := strings.Split(env.AdminToken, "_")[1]
	badSecret := "mwt_" + id + "_" + strings.Repeat("A", 43)
	unknown := "mwt_0011223344556677_" + strings.Repeat("A", 43)
	tokens := []string{"", "garbage", unknown, badSecret}
	const rounds = 25
	for range rounds {
		for _, tok := range tokens {
			if status, _ := rawRequest(t, env.Socket, "POST", "/v1/tokens", tok, `{}`); status != http.StatusUnauthorized {
				t.Fatalf("token %q: status %d, want 401", tok, status)
			}
		}
	}
	// Within the minute: the first failure only.
	failed := auditedFailures(t, env)
	if len(failed) != 1 || failed[0].Count != 1 || failed[0].Target != "unix:"+env.Socket || failed[0].Status != 401 || failed[0].Result != "denied" {
		t.Fatalf("audit within the first minute: %+v, want one entry for the socket with count 1", failed)
	}
	// A minute on, the next failure brings the suppressed ones in.
	clock.Add(int64(authEvery + time.Second))
	if status, _ := rawRequest(t, env.Socket, "GET", "/v1/status", "garbage", ""); status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", status)
	}
	failed = auditedFailures(t, env)
	if len(failed) != 2 || failed[0].Count != rounds*len(tokens)-1 {
		t.Fatalf("audit after a minute: %+v, want a second entry for the %d suppressed failures", failed, rounds*len(tokens)-1)
	}
	want := "missing_token=24 malformed_token=25 unknown_token=25 bad_secret=25; last POST /v1/tokens" // the first failure had no token
	if failed[0].Detail != want {
		t.Fatalf("detail %q, want %q", failed[0].Detail, want)
	}
	// Close writes what is pending.
	if err := env.Server.Close(); err != nil {
		t.Fatal(err)
	}
	failed = auditedFailures(t, env)
	total := 0
	for _, e := range failed {
		total += e.Count
	}
	if len(failed) != 3 || total != rounds*len(tokens)+1 {
		t.Fatalf("audit after Close: %d entries counting %d failures, want 3 counting %d: %+v", len(failed), total, rounds*len(tokens)+1, failed)
	}
	got := authFailures(t, reg)
	wantMetric := map[string]int{"missing_token": rounds, "malformed_token": rounds + 1, "unknown_token": rounds, "bad_secret": rounds}
	for k, v := range wantMetric {
		if got[k] != v {
			t.Errorf("auth failures %q = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// authEvery is the least time between two audit entries of one source.
const authEvery = time.Minute

// auditedFailures lists the audit entries of failed authentications,
// newest first.
func auditedFailures(t *testing.T, env *admintest.Env) []admin.AuditEntry {
	t.Helper()
	es, err := env.Store.Audit(1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []admin.AuditEntry
	for _, e := range es {
		if e.Action == "auth.fail" {
			out = append(out, e)
		}
	}
	return out
}
