package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// advisory holds, besides prose: a public address (twice), a domain, an
// MD5, a documentation address, a public resolver, a CVE and an e-mail.
const advisory = `# Advisory 2026-11: a loader campaign

The loader calls back to 45.61.10[.]20 and hxxps://update-check[.]net/gate.php,
drops a file with MD5 0cc175b9c0f1b6a831c399e269772661 and exploits
CVE-2024-3400. Contact soc@vendor.example if you see 45.61.10.20 again.
In our lab it also talked to 198.51.100.23 and resolved names at 8.8.8.8.
`

func runIntelNode(t *testing.T, socket string, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "meshward", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newIntelCmd())
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append(args, "--node", socket))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestIntelExtractPublish: --publish publishes the advisory's indicators
// as reports with the advisory as their source, once each; flagged
// (documentation range) and warninglisted (a public resolver) values and
// what is no indicator (CVE, e-mail) are listed, never published.
func TestIntelExtractPublish(t *testing.T) {
	env := cliEnv(t)
	path := filepath.Join(t.TempDir(), "adv-2026-11.md")
	if err := os.WriteFile(path, []byte(advisory), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runIntelNode(t, env.Socket, "intel", "extract", path, "--publish", "--confidence", "60", "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	results := map[string]extractResult{}
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r extractResult
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if _, dup := results[r.Value]; !dup {
			results[r.Value] = r
		} else if r.Result != "duplicate" {
			t.Errorf("%s found again: %s, want duplicate", r.Value, r.Result)
		}
	}
	for value, want := range map[string]string{
		"45.61.10.20":                       "published",
		"https://update-check.net/gate.php": "published",
		"0cc175b9c0f1b6a831c399e269772661":  "published",
		"198.51.100.23":                     "flagged",
		"8.8.8.8":                           "warninglisted",
		"CVE-2024-3400":                     "not an indicator",
		"soc@vendor.example":                "not an indicator",
	} {
		if got := results[value]; got.Result != want {
			t.Errorf("%s: %+v, want %s", value, got, want)
		}
	}
	reps, err := env.Node.Reports(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	published := map[string]bool{}
	for _, r := range reps {
		rep := r.Report
		if !strings.HasPrefix(rep.Source, "advisory:") {
			continue // the fake node's own reports
		}
		if rep.Source != "advisory:adv-2026-11.md" || rep.Confidence != 60 || rep.ValidUntil.IsZero() || !strings.Contains(rep.Description, "adv-2026-11.md, line") ||
			!strings.Contains(rep.Description, "CVE-2024-3400") {
			t.Errorf("report %+v: want the advisory as source and provenance", rep)
		}
		if published[rep.Indicator.Value] {
			t.Errorf("%s published twice", rep.Indicator.Value)
		}
		published[rep.Indicator.Value] = true
	}
	for value, r := range results {
		if published[value] != (r.Result == "published") {
			t.Errorf("%s: result %s, published %v", value, r.Result, published[value])
		}
	}
	if len(published) != 3 {
		t.Errorf("published %v, want the URL, the address and the hash", published)
	}
}
