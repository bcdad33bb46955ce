package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runIntel runs the meshward root command with args and stdin.
func runIntel(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

const intelAdvisory = `Advisory: CVE-2024-3400 exploited (T1190).
C2 at hxxps://update-check[.]net/beacon, fallback 198.51.100.7.
Dropped payload.exe, version v1.2.3.4.
`

func TestIntelExtractJSON(t *testing.T) {
	want := `{"type":"cve","value":"CVE-2024-3400","line":1}
{"type":"attack_technique","value":"T1190","line":1}
{"type":"url","value":"https://update-check.net/beacon","line":2}
{"type":"ipv4","value":"198.51.100.7","line":2,"flag":"documentation"}
`
	got, err := runIntel(t, intelAdvisory, "intel", "extract", "-", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("stdin, -o json:\n got %s\nwant %s", got, want)
	}
	file := filepath.Join(t.TempDir(), "advisory.md")
	if err := os.WriteFile(file, []byte(intelAdvisory), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = runIntel(t, "", "intel", "extract", "--output=json", file)
	if err != nil || got != want {
		t.Fatalf("file, -o json: %v\n got %s\nwant %s", err, got, want)
	}
}

func TestIntelExtractTable(t *testing.T) {
	got, err := runIntel(t, intelAdvisory, "intel", "extract", "-")
	if err != nil {
		t.Fatal(err)
	}
	want := `LINE  TYPE              VALUE                            FLAG
1     cve               CVE-2024-3400                    
1     attack_technique  T1190                            
2     url               https://update-check.net/beacon  
2     ipv4              198.51.100.7                     documentation
`
	if got != want {
		t.Fatalf("table:\n got %q\nwant %q", got, want)
	}
}

func TestIntelExtractErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.txt")
	if _, err := runIntel(t, "", "intel", "extract", missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want one naming %s", err, missing)
	}
	if _, err := runIntel(t, "", "intel", "extract", "-", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "table or json") {
		t.Errorf("-o yaml: err = %v, want a usage error", err)
	}
	if _, err := runIntel(t, "", "intel", "extract"); err == nil {
		t.Error("no argument: want an error")
	}
}
