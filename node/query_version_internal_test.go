package node

import (
	"encoding/json"
	"strings"
	"testing"
)

// The health answer's version is a new, optional field: an older node's
// answer (without it) still decodes, an answer without a version leaves
// it out, and a node always reports one.
func TestHealthAnswerVersion(t *testing.T) {
	var old HealthAnswer
	if err := json.Unmarshal([]byte(`{"site":"a","uptime_seconds":3,"peers":2,"member":true,"mesh_policies":1,"load_average":0.5}`), &old); err != nil {
		t.Fatalf("an older node's answer: %v", err)
	}
	if old.Version != "" || old.Site != "a" || old.Peers != 2 {
		t.Errorf("an older node's answer decoded as %+v", old)
	}
	b, err := json.Marshal(HealthAnswer{Site: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "version") {
		t.Errorf("an answer without a version carries the field: %s", b)
	}
	b, err = json.Marshal(HealthAnswer{Site: "a", Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"version":"v1.2.3"`) {
		t.Errorf("the version is not answered: %s", b)
	}
	if v := nodeVersion("v1.2.3"); v != "v1.2.3" {
		t.Errorf("the version the node was started with: %q", v)
	}
	if v := nodeVersion(""); v == "" {
		t.Error("a node started without a version reports none")
	}
}
