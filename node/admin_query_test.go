package node

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
)

// TestAdminMeshQuery: GET /v1/query on a real node answers for the whole
// mesh (here the node alone), and refuses a malformed question with 400
// naming what is wrong.
func TestAdminMeshQuery(t *testing.T) {
	n := startSingle(t, nil)
	waitFor(t, "the node to lead", func() bool { return n.Consensus().IsLeader() && n.Consensus().IsMember(n.ID()) })
	c := localAdminClient(t, n.deps.Config.SocketPath())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	v, err := c.Query(ctx, "indicator", "203.0.113.9", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Results) != 1 || v.Results[0].Status != "answered" || v.Results[0].Node != n.ID() || v.Summary["answered"] != 1 {
		t.Fatalf("query: %+v", v)
	}
	var a IndicatorAnswer
	if err := json.Unmarshal(v.Results[0].Answer, &a); err != nil {
		t.Fatal(err)
	}
	if a.Indicator != "203.0.113.9" || a.Enforcing || a.Sightings != 0 {
		t.Errorf("answer %+v, want an indicator nobody saw", a)
	}
	v, err = c.Query(ctx, "health", "", 0)
	if err != nil || len(v.Results) != 1 || v.Results[0].Status != "answered" {
		t.Fatalf("health: %+v, %v", v, err)
	}
	for _, bad := range []struct {
		kind, value string
		timeout     time.Duration
	}{
		{"indicator", "not an indicator!", time.Second}, // answered with an error by the member
		{"delete", "x", time.Second},
		{"indicator", "", time.Second},
		{"health", "x", time.Second},
		{"indicator", "203.0.113.9", 2 * time.Minute},
	} {
		v, err := c.Query(ctx, bad.kind, bad.value, bad.timeout)
		if bad.value == "not an indicator!" {
			if err != nil || v.Results[0].Status != "error" || v.Results[0].Error == "" {
				t.Errorf("%+v: %+v, %v; want the member's error", bad, v, err)
			}
			continue
		}
		var ae *admin.APIError
		if !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("%+v: err %v, want 400", bad, err)
		}
	}
}

// localAdminClient is a client of the admin API on socket with the
// node's local admin token (beside the socket), closed with the test.
func localAdminClient(tb testing.TB, socket string) *admin.Client {
	tb.Helper()
	tok, err := admin.ReadTokenFile(admin.DefaultTokenFile(socket))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := admin.NewClient(socket, tok, admin.ClientOptions{Timeout: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}
