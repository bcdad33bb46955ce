package admin_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

const otherNode = "12D3KooWTestPeerBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"

// ackEnv serves a node holding two of its own detections and one sighting
// of another node.
func ackEnv(t *testing.T) (*admintest.Env, []string) {
	t.Helper()
	node := admintest.NewNode(nodeID)
	now := time.Now().UTC()
	ind, err := intel.ParseIndicator("203.0.113.7")
	if err != nil {
		t.Fatal(err)
	}
	for i, origin := range []string{nodeID, otherNode, nodeID} {
		node.AddSighting(store.SightingRecord{Origin: origin, Seq: uint64(i + 1), Received: now.Add(time.Duration(i) * time.Second), Sent: now,
			Sighting: intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Count: 5, Confidence: 80, FirstSeen: now, LastSeen: now}})
	}
	// Newest first: seq 3, then seq 1.
	return admintest.Start(t, node, admin.Options{}), []string{admin.DetectionID(nodeID, 3), admin.DetectionID(nodeID, 1)}
}

func TestDetectionIDs(t *testing.T) {
	if admin.DetectionID(nodeID, 1) != admin.DetectionID(nodeID, 1) {
		t.Fatal("detection ID is not deterministic")
	}
	ids := map[string]bool{}
	for _, o := range []string{nodeID, otherNode} {
		for seq := range uint64(100) {
			id := admin.DetectionID(o, seq)
			if len(id) != 16 || ids[id] {
				t.Fatalf("ID %q of %s/%d: wrong length or duplicate", id, o, seq)
			}
			ids[id] = true
		}
	}

	env, want := ackEnv(t)
	c := env.Client(t, env.AdminToken)
	for range 2 { // the same IDs in every request
		ds, err := c.Detections(context.Background(), admin.DetectionQuery{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range ds {
			got = append(got, d.ID)
			if d.Origin != nodeID || d.Acknowledged || d.Ack != nil {
				t.Fatalf("detection %+v", d)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("detection IDs %v, want %v", got, want)
		}
	}
}

func TestAckDetection(t *testing.T) {
	env, ids := ackEnv(t)
	ctx := context.Background()
	adm := env.Client(t, env.AdminToken)
	vt, rt := env.NewToken(t, admin.RoleViewer, "grafana"), env.NewToken(t, admin.RoleResponder, "oncall")
	viewer, responder := env.Client(t, vt.Secret), env.Client(t, rt.Secret)

	// A viewer may not acknowledge.
	_, err := viewer.Ack(ctx, ids[0], "mine")
	wantAPIError(t, err, 403, "forbidden")

	// A responder may, once.
	d, err := responder.Ack(ctx, ids[0], "blocked at the edge")
	if err != nil {
		t.Fatalf("responder ack: %v", err)
	}
	if d.ID != ids[0] || !d.Acknowledged || d.Ack == nil || d.Ack.By != "oncall" || d.Ack.TokenID != rt.ID ||
		d.Ack.Note != "blocked at the edge" || d.Ack.At.IsZero() {
		t.Fatalf("ack answer %+v (ack %+v)", d, d.Ack)
	}
	_, err = adm.Ack(ctx, ids[0], "")
	wantAPIError(t, err, 409, "conflict")
	if !strings.Contains(err.Error(), "already acknowledged by oncall") {
		t.Errorf("second ack: %v, want it to name the first", err)
	}

	// An admin may too, with no body at all.
	if status, body := rawRequest(t, env.Socket, "POST", "/v1/detections/"+ids[1]+"/ack", env.AdminToken, ""); status != 200 {
		t.Fatalf("ack without a body: %d %s", status, body)
	}

	// Unknown detections, sightings of other nodes, bad notes.
	_, err = responder.Ack(ctx, "0011223344556677", "")
	wantAPIError(t, err, 404, "not_found")
	_, err = responder.Ack(ctx, admin.DetectionID(otherNode, 2), "")
	wantAPIError(t, err, 404, "not_found")
	_, err = responder.Ack(ctx, ids[0], strings.Repeat("n", store.MaxAckNoteLen+1))
	wantAPIError(t, err, 400, "bad_request")
	if status, _ := rawRequest(t, env.Socket, "POST", "/v1/detections/"+ids[0]+"/ack", rt.Secret, `{"note":"x","who":"y"}`); status != http.StatusBadRequest {
		t.Fatalf("unknown field: status %d, want 400", status)
	}

	// The list shows who acknowledged what, to a viewer too.
	ds, err := viewer.Detections(ctx, admin.DetectionQuery{})
	if err != nil || len(ds) != 2 {
		t.Fatalf("detections: %+v, %v", ds, err)
	}
	if !ds[0].Acknowledged || ds[0].Ack.By != "oncall" || !ds[1].Acknowledged || ds[1].Ack.By != admin.LocalAdminName {
		t.Fatalf("detections after ack: %+v %+v", ds[0].Ack, ds[1].Ack)
	}

	// Withdrawing: a viewer may not; a responder may; then the filter.
	wantAPIError(t, viewer.Unack(ctx, ids[1]), 403, "forbidden")
	if err := responder.Unack(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, responder.Unack(ctx, ids[1]), 404, "not_found")
	no, yes := false, true
	if ds, err := viewer.Detections(ctx, admin.DetectionQuery{Acknowledged: &no}); err != nil || len(ds) != 1 || ds[0].ID != ids[1] || ds[0].Ack != nil {
		t.Fatalf("unacknowledged: %+v, %v", ds, err)
	}
	if ds, err := viewer.Detections(ctx, admin.DetectionQuery{Acknowledged: &yes, Limit: 1}); err != nil || len(ds) != 1 || ds[0].ID != ids[0] {
		t.Fatalf("acknowledged: %+v, %v", ds, err)
	}
	if status, _ := rawRequest(t, env.Socket, "GET", "/v1/detections?acknowledged=maybe", vt.Secret, ""); status != 400 {
		t.Fatalf("acknowledged=maybe: status %d, want 400", status)
	}

	// Every attempt is in the audit trail, the denied ones too.
	es, err := viewer.Audit(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		if strings.HasPrefix(e.Action, "detection.") {
			got = append(got, e.Action+" "+e.Result+" "+e.Target)
		}
	}
	want := []string{ // newest first
		"detection.unack error " + ids[1],
		"detection.unack ok " + ids[1],
		"detection.unack denied " + ids[1],
		"detection.ack error " + ids[0],
		"detection.ack error " + ids[0],
		"detection.ack error " + admin.DetectionID(otherNode, 2),
		"detection.ack error 0011223344556677",
		"detection.ack ok " + ids[1],
		"detection.ack error " + ids[0],
		"detection.ack ok " + ids[0],
		"detection.ack denied " + ids[0],
	}
	if !slices.Equal(got, want) {
		t.Fatalf("audit trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range es {
		if e.Action == "detection.ack" && e.Result == "ok" && e.Target == ids[0] {
			if !strings.Contains(e.Actor, "oncall") || !strings.Contains(e.Detail, "blocked at the edge") {
				t.Errorf("ack audited as %+v", e)
			}
		}
	}
}
