package admin_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
)

// operatorEnv is an API over a fake node with two operator keys, an admin
// (alice) and a responder (bob), and a viewer, a responder and the local
// admin token.
type operatorEnv struct {
	*admintest.Env
	alice, bob                ed25519.PrivateKey
	viewer, responder, admin_ *admin.Client
}

func newOperatorEnv(t *testing.T) *operatorEnv {
	t.Helper()
	node := admintest.NewNode(nodeID)
	e := &operatorEnv{Env: admintest.Start(t, node, admin.Options{}),
		alice: admintest.OperatorKey("alice"), bob: admintest.OperatorKey("bob")}
	node.AddOperator(e.alice.Public().(ed25519.PublicKey), intel.OperatorAdmin, "alice")
	node.AddOperator(e.bob.Public().(ed25519.PublicKey), intel.OperatorResponder, "bob")
	e.viewer = e.Client(t, e.NewToken(t, admin.RoleViewer, "ro").Secret)
	e.responder = e.Client(t, e.NewToken(t, admin.RoleResponder, "oncall").Secret)
	e.admin_ = e.Client(t, e.AdminToken)
	return e
}

func (e *operatorEnv) sign(t *testing.T, priv ed25519.PrivateKey, c intel.OperatorCommand) intel.OperatorSigned {
	t.Helper()
	return admintest.Signed(t, priv, e.Node.MeshID(), time.Now(), c)
}

func block(value string) intel.OperatorCommand {
	ind, err := intel.ParseIndicator(value)
	if err != nil {
		panic(err)
	}
	return intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: 3600, Reason: "scan"}
}

func TestOperatorState(t *testing.T) {
	e := newOperatorEnv(t)
	st, err := e.viewer.Operator(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mesh != e.Node.MeshID() || len(st.Operators) != 2 || st.JoinTokens == nil {
		t.Fatalf("operator state %+v", st)
	}
	for _, o := range st.Operators {
		pub, err := intel.ParseOperatorPublicKey(o.PublicKey)
		if err != nil || intel.OperatorKeyID(pub) != o.KeyID {
			t.Errorf("operator %+v: public key does not match its ID (%v)", o, err)
		}
	}
}

func TestOperatorCommandRoles(t *testing.T) {
	e := newOperatorEnv(t)
	ctx := context.Background()

	// A viewer token cannot submit anything, even signed by an admin key.
	_, err := e.viewer.SubmitOperator(ctx, e.sign(t, e.alice, block("203.0.113.7")))
	wantAPIError(t, err, 403, "forbidden")

	// A responder token submits a block, not an admin command.
	res, err := e.responder.SubmitOperator(ctx, e.sign(t, e.bob, block("203.0.113.7")))
	if err != nil {
		t.Fatalf("responder block: %v", err)
	}
	if res.Op != intel.OpBlock || res.KeyID != intel.OperatorKeyID(e.bob.Public().(ed25519.PublicKey)) ||
		res.Target != "ipv4:203.0.113.7" || res.Policy == nil || res.Policy.Scope != admin.ScopeMesh {
		t.Fatalf("result %+v", res)
	}
	_, err = e.responder.SubmitOperator(ctx, e.sign(t, e.alice, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "192.0.2.0/24"}))
	wantAPIError(t, err, 403, "forbidden")
	if !strings.Contains(err.Error(), "needs a token of role admin") {
		t.Errorf("error %v does not say what the command needs", err)
	}
	// A wide block is an admin command.
	wide := block("198.51.0.0/16")
	wide.Wide = true
	_, err = e.responder.SubmitOperator(ctx, e.sign(t, e.bob, wide))
	wantAPIError(t, err, 403, "forbidden")

	// An admin token with a responder key: the mesh refuses the key's role.
	_, err = e.admin_.SubmitOperator(ctx, e.sign(t, e.bob, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "192.0.2.0/24"}))
	wantAPIError(t, err, 403, "forbidden")
	// Both an admin token and an admin key: done.
	if _, err := e.admin_.SubmitOperator(ctx, e.sign(t, e.alice, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "192.0.2.0/24"})); err != nil {
		t.Fatalf("admin protect: %v", err)
	}
	if got := e.Node.Commands(); len(got) != 2 || got[0].Op != intel.OpBlock || got[1].Op != intel.OpProtect {
		t.Fatalf("committed %+v", got)
	}

	// The audit trail names the operator key, the op and its target.
	es, err := e.viewer.Audit(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range es {
		if strings.HasPrefix(a.Action, "operator.") {
			got = append(got, a.Action+" "+a.Result+" "+a.Target)
			if a.Action != "operator.command" && !strings.Contains(a.Detail, "operator=op:") {
				t.Errorf("audit entry %+v does not name the operator key", a)
			}
		}
	}
	want := []string{
		"operator.protect ok 192.0.2.0/24",
		"operator.protect denied 192.0.2.0/24",
		"operator.block denied cidr:198.51.0.0/16",
		"operator.protect denied 192.0.2.0/24",
		"operator.block ok ipv4:203.0.113.7",
		"operator.command denied ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestOperatorCommandRefused(t *testing.T) {
	e := newOperatorEnv(t)
	ctx := context.Background()

	// A body changed after signing: the signature no longer verifies.
	s := e.sign(t, e.alice, block("203.0.113.7"))
	s.Body = []byte(strings.Replace(string(s.Body), "203.0.113.7", "203.0.113.8", 1))
	_, err := e.admin_.SubmitOperator(ctx, s)
	wantAPIError(t, err, 403, "forbidden")
	if !strings.Contains(err.Error(), "operator signature invalid") {
		t.Errorf("tampered body: %v, want the reason named", err)
	}

	// A truncated key, an unknown field in the signed body: malformed.
	s = e.sign(t, e.alice, block("203.0.113.7"))
	s.Key = s.Key[:10]
	_, err = e.admin_.SubmitOperator(ctx, s)
	wantAPIError(t, err, 400, "bad_request")
	if !strings.Contains(err.Error(), "key is 10 bytes") {
		t.Errorf("short key: %v", err)
	}
	var body map[string]any
	c := block("203.0.113.7")
	c.Header = intel.OperatorHeader{Mesh: e.Node.MeshID(), Nonce: strings.Repeat("ab", 16), Issued: time.Now(), Expires: time.Now().Add(time.Minute)}
	raw, _ := json.Marshal(c)
	json.Unmarshal(raw, &body)
	body["colour"] = "blue"
	raw, _ = json.Marshal(body)
	_, err = e.admin_.SubmitOperator(ctx, intel.SignOperator(e.alice, raw))
	wantAPIError(t, err, 400, "bad_request")
	if !strings.Contains(err.Error(), "colour") {
		t.Errorf("unknown field: %v", err)
	}
	status, b := rawRequest(t, e.Socket, "POST", "/v1/operator/commands", e.AdminToken, `{"key":"AA==","body":"e30=","sig":"AA==","x":1}`)
	if status != 400 || !strings.Contains(string(b), "x") {
		t.Fatalf("unknown request field: %d %s", status, b)
	}

	// Another mesh's command.
	_, err = e.admin_.SubmitOperator(ctx, admintest.Signed(t, e.alice, "another-mesh", time.Now(), block("203.0.113.7")))
	wantAPIError(t, err, 400, "bad_request")
	if !strings.Contains(err.Error(), "another-mesh") {
		t.Errorf("wrong mesh: %v", err)
	}

	// A key the mesh does not know, a node key among them.
	_, err = e.admin_.SubmitOperator(ctx, e.sign(t, admintest.OperatorKey("mallory"), block("203.0.113.7")))
	wantAPIError(t, err, 403, "forbidden")
	if !strings.Contains(err.Error(), "not an operator key") {
		t.Errorf("unknown key: %v", err)
	}

	// A replay of a committed command.
	s = e.sign(t, e.alice, block("203.0.113.7"))
	if _, err := e.admin_.SubmitOperator(ctx, s); err != nil {
		t.Fatal(err)
	}
	_, err = e.admin_.SubmitOperator(ctx, s)
	wantAPIError(t, err, 403, "forbidden")

	// The mesh's rules refuse it: 409 naming the reason.
	e.Node.FailSubmits(errors.Join(admin.ErrRefused, errors.New("block of 10.0.0.1 overlaps protected 10.0.0.0/8")))
	_, err = e.admin_.SubmitOperator(ctx, e.sign(t, e.alice, block("10.0.0.1")))
	wantAPIError(t, err, 409, "conflict")
	if !strings.Contains(err.Error(), "protected 10.0.0.0/8") {
		t.Errorf("refused: %v", err)
	}
	if n := len(e.Node.Commands()); n != 1 {
		t.Fatalf("%d commands committed, want 1", n)
	}
}
