package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
)

// addCLIPolicies gives env's node mesh more mesh-wide blocks and local
// local decisions.
func addCLIPolicies(env *admintest.Env, mesh, local int) {
	for i := range mesh + local {
		ind := intel.Indicator{Type: intel.IPv4, Value: fmt.Sprintf("10.0.%d.%d", i>>8, i&255)}
		env.Node.AddPolicy(intel.NewPolicy(intel.ActionBlock, ind, "test", "test", fixed, 0), i >= mesh)
	}
}

// policy list walks the pages and prints every policy once, as a table or
// as one JSON array identical to encoding the whole list at once; --limit
// stops early.
func TestCLIPolicyListPages(t *testing.T) {
	env := cliEnv(t)
	addCLIPolicies(env, 120, 3) // with cliEnv's own block: 121 mesh-wide
	const total = 124
	calls := env.Node.PageCalls()
	out, _, err := runCLI(t, env, "policy", "list", "--page-size", "7")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != total+1 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("%d lines, want a header and %d policies:\n%s", len(lines), total, out)
	}
	seen := map[string]bool{}
	for _, l := range lines[1:] {
		id := strings.Fields(l)[0]
		if seen[id] {
			t.Fatalf("policy %s listed twice", id)
		}
		seen[id] = true
	}
	if got := env.Node.PageCalls() - calls; got != (121+6)/7 {
		t.Fatalf("the node was asked for %d pages of mesh-wide policies, want %d", got, (121+6)/7)
	}

	out, _, err = runCLI(t, env, "policy", "list", "--page-size", "7", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ps []admin.PolicyView
	if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps) != total {
		t.Fatalf("-o json: %d policies, %v", len(ps), err)
	}
	var whole bytes.Buffer
	enc := json.NewEncoder(&whole)
	enc.SetIndent("", "  ")
	enc.Encode(ps)
	if out != whole.String() {
		t.Fatalf("-o json differs from the whole list encoded at once:\n%.400s\nwant:\n%.400s", out, whole.String())
	}
	if ps[total-1].Scope != admin.ScopeLocal || ps[0].Scope != admin.ScopeMesh {
		t.Fatalf("want mesh-wide policies first, local decisions last")
	}

	out, _, err = runCLI(t, env, "policy", "list", "--limit", "10", "--page-size", "4")
	if err != nil || strings.Count(out, "\n") != 11 {
		t.Fatalf("--limit 10: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "policy", "list", "--limit", "3", "-o", "json")
	if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps) != 3 {
		t.Fatalf("--limit 3 -o json: %d, %v\n%s", len(ps), err, out)
	}
	out, _, err = runCLI(t, env, "policy", "list", "--scope", "local", "-o", "json")
	if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps) != 3 {
		t.Fatalf("--scope local: %d, %v", len(ps), err)
	}
	for _, bad := range [][]string{{"--page-size", "0"}, {"--page-size", "10001"}, {"--limit", "-1"}} {
		if _, _, err := runCLI(t, env, append([]string{"policy", "list"}, bad...)...); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v, want an error naming the flag", bad, err)
		}
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A file with bad lines is refused whole: every bad line is named by file
// and line number, and nothing is submitted.
func TestCLIBulkFileErrors(t *testing.T) {
	env, deps := operatorEnv(t)
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"# feed\n203.0.113.1\n\nnot an indicator!\n203.0.113.2 # ok\n203.0.113.3 extra\n",
			[]string{":4: ", ":6: ", "one indicator per line", "nothing was submitted"}},
		{"203.0.113.1\n10.0.0.0/33\n", []string{":2: ", "10.0.0.0/33", "nothing was submitted"}},
		{"# only comments\n\n", []string{"holds no indicator", "nothing was submitted"}},
		{strings.Repeat("x", maxBulkLine+1) + "\n", []string{":1: ", "line over", "nothing was submitted"}},
	} {
		path := writeFile(t, "feed.txt", tc.text)
		_, _, err := runCLIWith(t, env, deps, "policy", "block", "--file", path)
		if err == nil {
			t.Fatalf("file %q: no error", tc.text)
		}
		for _, w := range tc.want {
			if w[0] == ':' {
				w = path + w
			}
			if !strings.Contains(err.Error(), w) {
				t.Errorf("file %q: %v, want it to name %q", tc.text, err, w)
			}
		}
	}
	if cmds := env.Node.Commands(); len(cmds) != 0 {
		t.Fatalf("%d commands submitted from bad files", len(cmds))
	}
	for _, args := range [][]string{
		{"policy", "block"},
		{"policy", "block", "203.0.113.1", "--file", "x"},
		{"policy", "block", "--file", "x", "--local"},
	} {
		if _, _, err := runCLIWith(t, env, deps, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// A file of thousands of indicators is committed as several bulk commands
// (each within the bounds of one), duplicates once; a command refused by
// the mesh names the indicator's line, and the others are committed.
func TestCLIBulkBlock(t *testing.T) {
	env, deps := operatorEnv(t)
	var b strings.Builder
	b.WriteString("# abuse feed\n")
	const distinct = 4500
	for i := range distinct {
		fmt.Fprintf(&b, "198.%d.%d.%d\n", 18+i>>16, i>>8&255, i&255)
		if i%1000 == 0 {
			fmt.Fprintf(&b, "198.%d.%d.%d   # again\n\n", 18+i>>16, i>>8&255, i&255)
		}
	}
	path := writeFile(t, "feed.txt", b.String())
	out, _, err := runCLIWith(t, env, deps, "policy", "block", "--file", path, "--ttl", "72h", "--reason", "feed", "-o", "json")
	if err != nil {
		t.Fatalf("bulk block: %v\n%s", err, out)
	}
	var rep BulkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Indicators != distinct || rep.Accepted != distinct || rep.Duplicates != 5 || len(rep.Commands) < 3 {
		t.Fatalf("report %+v", rep)
	}
	cmds := env.Node.Commands()
	sum := 0
	for _, c := range cmds {
		if c.Op != intel.OpBlockBulk || c.TTLSeconds != 72*3600 || c.Reason != "feed" || len(c.Indicators) > intel.MaxBulkIndicators {
			t.Fatalf("command %s of %d indicators, ttl %d, reason %q", c.Op, len(c.Indicators), c.TTLSeconds, c.Reason)
		}
		sum += len(c.Indicators)
	}
	if sum != distinct || len(cmds) != len(rep.Commands) {
		t.Fatalf("%d commands of %d indicators, want %d", len(cmds), sum, distinct)
	}
	for i := range distinct {
		ind := intel.Indicator{Type: intel.IPv4, Value: fmt.Sprintf("198.%d.%d.%d", 18+i>>16, i>>8&255, i&255)}
		if _, ok := env.Node.MeshPolicy(intel.PolicyID(intel.ActionBlock, ind), fixed.Add(time.Minute)); !ok {
			t.Fatalf("%s not blocked", ind)
		}
	}

	// A protected address refuses its command, named with its line; the
	// other command is committed.
	env.Node.St.Mesh.Protected = []string{"192.0.2.0/24"}
	b.Reset()
	for i := range intel.MaxBulkIndicators + 100 { // two commands
		fmt.Fprintf(&b, "203.0.%d.%d\n", i>>8, i&255)
	}
	b.WriteString("192.0.2.77\n")
	path = writeFile(t, "allow.txt", b.String())
	out, _, err = runCLIWith(t, env, deps, "policy", "block", "--file", path, "--parallel", "2")
	if err == nil || !strings.Contains(err.Error(), "1 of 2 block_bulk commands were not committed, with their 101 indicators") || !strings.Contains(out, "not committed: ") {
		t.Fatalf("bulk block with a protected address: %v\n%s", err, out)
	}
	if !strings.Contains(out, "indicators[100] 192.0.2.77:") || !strings.Contains(out, path+":2101)") || !strings.Contains(out, "accepted") {
		t.Fatalf("report does not name the refused indicator's line:\n%s", out)
	}
	if _, ok := env.Node.MeshPolicy(intel.PolicyID(intel.ActionBlock, intel.Indicator{Type: intel.IPv4, Value: "203.0.0.0"}), fixed.Add(time.Minute)); !ok {
		t.Fatal("the accepted command's first address is not blocked")
	}
	if _, ok := env.Node.MeshPolicy(intel.PolicyID(intel.ActionBlock, intel.Indicator{Type: intel.IPv4, Value: "203.0.7.208"}), fixed.Add(time.Minute)); ok {
		t.Fatal("the refused command's first address is blocked")
	}
}

// splitBulk keeps every command within the count and the body bound.
func TestSplitBulk(t *testing.T) {
	var inds []fileIndicator
	for i := range 5000 {
		inds = append(inds, fileIndicator{ind: intel.Indicator{Type: intel.Domain, Value: fmt.Sprintf("h%d.%s.example", i, strings.Repeat("a", i%50+1))}, line: i + 1})
	}
	base := intel.OperatorCommand{Op: intel.OpBlockBulk, TTLSeconds: 60, Reason: strings.Repeat("\"", 200)}
	for _, maxBody := range []int{16 << 10, 180 << 10, 1 << 30} {
		chunks, err := splitBulk(base, inds, maxBody)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ch := range chunks {
			c := base
			c.Header = intel.OperatorHeader{Mesh: strings.Repeat("m", 100), Nonce: strings.Repeat("0", 32), Issued: fixed, Expires: fixed.Add(time.Minute)}
			for _, fi := range ch {
				c.Indicators = append(c.Indicators, fi.ind)
			}
			body, _ := json.Marshal(c)
			if len(ch) > intel.MaxBulkIndicators || len(body) > maxBody {
				t.Fatalf("max body %d: a command of %d indicators and %d bytes", maxBody, len(ch), len(body))
			}
			n += len(ch)
		}
		if n != len(inds) {
			t.Fatalf("max body %d: %d indicators in commands, want %d", maxBody, n, len(inds))
		}
		if maxBody == 1<<30 && len(chunks) != 3 {
			t.Fatalf("unbounded body: %d commands, want 3", len(chunks))
		}
	}
}

// debug pprof saves a profile with an admin token; with a viewer token it
// is refused and leaves no file.
func TestCLIDebugPprof(t *testing.T) {
	env := cliEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "heap.pb.gz")
	out, _, err := runCLI(t, env, "debug", "pprof", "heap", "-o", file)
	if err != nil || !strings.Contains(out, "wrote heap profile") {
		t.Fatalf("debug pprof heap: %v %q", err, out)
	}
	b, err := os.ReadFile(file)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("saved profile: %v, starts %x", err, b[:min(len(b), 2)])
	}
	viewer := env.TokenFile(t, admin.RoleViewer, "ro")
	other := filepath.Join(dir, "goroutine.pb.gz")
	_, _, err = runCLI(t, env, "debug", "pprof", "goroutine", "-o", other, "--token-file", viewer)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("viewer: %v, want 403", err)
	}
	if _, _, err := runCLI(t, env, "debug", "pprof", "profile", "--seconds", "61", "-o", other); err == nil || !strings.Contains(err.Error(), "--seconds 61") {
		t.Fatalf("--seconds 61: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files left in the directory, want the one profile", len(ents))
	}
}
