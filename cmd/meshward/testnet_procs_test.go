package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// runRoot runs the meshward command line with args and stdin, returning
// its standard output and error.
func runRoot(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// The hidden worker command speaks the control protocol on its standard
// input and output: it refuses an unknown operation by name and exits
// cleanly when its input ends.
func TestTestnetWorkerCommand(t *testing.T) {
	out, err := runRoot(t, `{"id":7,"op":"fly"}`+"\n", "testnet", "worker")
	if err != nil {
		t.Fatalf("worker at the end of its input: %v", err)
	}
	var rep struct {
		ID      int               `json:"id"`
		Error   string            `json:"error"`
		Refused map[string]uint64 `json:"refused"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("worker output %q: %v", out, err)
	}
	if rep.ID != 7 || !strings.Contains(rep.Error, `unknown_op: op "fly"`) || rep.Refused["unknown_op"] != 1 {
		t.Errorf("reply %+v", rep)
	}
}

// --processes is checked before anything starts: not negative, not more
// than the nodes, and not above 1 for a scenario file.
func TestTestnetProcessesFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"testnet", "-n", "3", "--processes", "4"}, "--processes 4: more than the 3 nodes"},
		{[]string{"testnet", "--processes", "-1"}, "--processes -1: must not be negative"},
		{[]string{"testnet", "run", "--processes", "2", "../../testnet/scenarios/leader-kill.yaml"}, "--processes 2: a scenario file runs in one process"},
	} {
		_, err := runRoot(t, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}
