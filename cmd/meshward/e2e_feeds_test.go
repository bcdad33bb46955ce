package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFeedCommandsOnAgent runs one `meshward agent` with a feed in its
// configuration file and drives the feed commands against it: the feed is
// published; `intel feeds add` runs a second one; `intel feeds sync`
// re-polls the first and publishes nothing; a feed of the file cannot be
// removed at runtime, a runtime one can; `intel import` and `intel export`
// go through the same node.
func TestFeedCommandsOnAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs an agent")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	_, opPub := operatorKeygen(t, bin, dir)
	d := filepath.Join(dir, "a")
	confList, rtList, impList := filepath.Join(dir, "conf.txt"), filepath.Join(dir, "rt.csv"), filepath.Join(dir, "imp.txt")
	for p, body := range map[string]string{
		confList: "# configured feed\n203.0.113.21\nconf.e2e-feed.example\n",
		rtList:   "seen,ioc\n2026-12-01,198.51.100.31\n",
		impList:  "198.51.100.41\n198.51.100.42\nnot valid!\n",
	} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	feedsYAML := fmt.Sprintf("intel:\n  feeds:\n    - {name: conf-list, path: %q, confidence: 65, ttl: 24h}\n", confList)
	writeConfig(t, d, "site-a", founderConsensus(opPub)+feedsYAML)
	startAgent(t, bin, d)
	sock := filepath.Join(d, "admin.sock")

	type feed struct {
		Config struct{ Name string } `json:"config"`
		Origin string                `json:"origin"`
		Last   struct {
			Result    string `json:"result"`
			Published int    `json:"published"`
		} `json:"last"`
	}
	feedsNow := func() map[string]feed {
		out, err := cli(bin, "intel", "feeds", "list", "-o", "json", "--node", sock, "--timeout", "2s")
		var fs []feed
		if err != nil || json.Unmarshal(out, &fs) != nil {
			return nil
		}
		m := map[string]feed{}
		for _, f := range fs {
			m[f.Config.Name] = f
		}
		return m
	}
	poll(t, ctx, "the configured feed to be published", func() bool {
		f, ok := feedsNow()["conf-list"]
		return ok && f.Last.Result == "ok" && f.Last.Published == 2 && f.Origin == "config"
	})
	if out, err := cli(bin, "intel", "feeds", "add", "rt-list", "--path", rtList, "--format", "csv", "--csv-column-name", "ioc", "--node", sock); err != nil {
		t.Fatalf("feeds add: %v\n%s", err, out)
	}
	poll(t, ctx, "the runtime feed to be published", func() bool {
		f, ok := feedsNow()["rt-list"]
		return ok && f.Last.Result == "ok" && f.Last.Published == 1 && f.Origin == "runtime"
	})
	out, err := cli(bin, "intel", "feeds", "sync", "conf-list", "--node", sock)
	if err != nil || !strings.Contains(string(out), "Published:  0") || !strings.Contains(string(out), "Unchanged:  2") {
		t.Fatalf("feeds sync: %v\n%s", err, out)
	}
	if out, err := cli(bin, "intel", "feeds", "remove", "conf-list", "--node", sock); err == nil || !strings.Contains(string(out), "409") {
		t.Fatalf("removing a feed of the file: %v\n%s", err, out)
	}
	if out, err := cli(bin, "intel", "feeds", "remove", "rt-list", "--node", sock); err != nil {
		t.Fatalf("feeds remove: %v\n%s", err, out)
	}
	if _, ok := feedsNow()["rt-list"]; ok {
		t.Fatal("the removed feed is still listed")
	}
	out, err = cli(bin, "intel", "import", impList, "--source", "e2e-import", "--node", sock)
	if err != nil || !strings.Contains(string(out), "published 2 reports with source e2e-import") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	out, err = cli(bin, "intel", "export", "--format", "plain", "--all", "--node", sock)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	for _, v := range []string{"203.0.113.21", "conf.e2e-feed.example", "198.51.100.31", "198.51.100.41", "198.51.100.42"} {
		if !strings.Contains(string(out), "\n"+v+"\n") {
			t.Errorf("export lacks %s:\n%s", v, out)
		}
	}
}
