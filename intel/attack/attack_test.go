package attack

import (
	"bytes"
	"errors"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/meshward/meshward/internal/testenv"
)

func loadShared(t testing.TB) *Catalog {
	t.Helper()
	c, err := Load(testenv.SharedData(t, "attack"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadShared(t *testing.T) {
	c := loadShared(t)
	if filepath.Base(c.Name) != "enterprise-attack-techniques.json" {
		t.Errorf("loaded %s, want enterprise-attack-techniques.json from the directory", c.Name)
	}
	// ATT&CK Enterprise v18.1 as the shared data's README describes it:
	// 835 attack-patterns of which 132 revoked and 12 deprecated; 14
	// tactics; 852 objects with the matrix, identity and marking.
	want := Counts{Objects: 852, Techniques: 216, Subtechniques: 475, Tactics: 14, Revoked: 132, Deprecated: 12}
	if c.Counts != want {
		t.Fatalf("counts %+v, want %+v", c.Counts, want)
	}
	if n := len(c.Techniques()); n != 691 {
		t.Errorf("Techniques() has %d, want 691", n)
	}

	bf, ok := c.Technique("T1110")
	if !ok || bf.Name != "Brute Force" || bf.IsSubtechnique() || !slices.Equal(bf.Tactics, []string{"credential-access"}) {
		t.Errorf("T1110 = %+v, %v; want Brute Force under credential-access", bf, ok)
	}
	if got := c.Subtechniques("t1110"); !slices.Equal(got, []string{"T1110.001", "T1110.002", "T1110.003", "T1110.004"}) {
		t.Errorf("Subtechniques(T1110) = %v", got)
	}
	pg, ok := c.Technique("t1110.001")
	if !ok || pg.Name != "Password Guessing" || pg.Parent != "T1110" || !pg.IsSubtechnique() {
		t.Errorf("T1110.001 = %+v, %v; want Password Guessing under T1110", pg, ok)
	}
	ps, ok := c.Technique("T1059.001")
	if !ok || ps.Name != "PowerShell" || ps.Parent != "T1059" || !slices.Equal(ps.Tactics, []string{"execution"}) ||
		!slices.Equal(ps.Platforms, []string{"Windows"}) || ps.URL != "https://attack.mitre.org/techniques/T1059/001" {
		t.Errorf("T1059.001 = %+v, %v; want PowerShell, execution, Windows", ps, ok)
	}
	if !strings.HasPrefix(ps.STIXID, "attack-pattern--") {
		t.Errorf("T1059.001 STIX ID %q", ps.STIXID)
	}

	// Revoked (T1066 Indicator Removal from Tools) and deprecated (T1064
	// Scripting) entries are skipped, and Check says why.
	for id, want := range map[string]error{"T1066": ErrRevoked, "T1064": ErrDeprecated, "T9999": ErrUnknown, "T1110.001": nil, "T11": ErrBadID} {
		if _, ok := c.Technique(id); ok && want != nil {
			t.Errorf("%s loaded, want it skipped", id)
		}
		if err := c.Check(id); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("Check(%s) = %v, want %v", id, err, want)
		}
	}

	tactics := c.Tactics()
	var short []string
	for _, tc := range tactics {
		short = append(short, tc.ShortName)
	}
	wantOrder := []string{"reconnaissance", "resource-development", "initial-access", "execution", "persistence", "privilege-escalation",
		"defense-evasion", "credential-access", "discovery", "lateral-movement", "collection", "command-and-control", "exfiltration", "impact"}
	if !slices.Equal(short, wantOrder) {
		t.Errorf("tactics in matrix order %v, want %v", short, wantOrder)
	}
	if ca, ok := c.Tactic("TA0006"); !ok || ca.ShortName != "credential-access" || ca.Name != "Credential Access" {
		t.Errorf("TA0006 = %+v, %v", ca, ok)
	}
	if ca, ok := c.Tactic("credential-access"); !ok || ca.ID != "TA0006" {
		t.Errorf("credential-access = %+v, %v", ca, ok)
	}
	// Every loaded technique has a tactic the catalog knows.
	for _, tc := range c.Techniques() {
		if len(tc.Tactics) == 0 {
			t.Errorf("%s has no tactic", tc.ID)
		}
		for _, s := range tc.Tactics {
			if _, ok := c.Tactic(s); !ok {
				t.Errorf("%s: tactic %q not in the catalog", tc.ID, s)
			}
		}
	}
}

const miniBundle = `{"type": "bundle", "id": "bundle--1", "spec_version": "2.0", "objects": [
 {"type": "x-mitre-tactic", "id": "x-mitre-tactic--b", "name": "Execution", "x_mitre_shortname": "execution",
  "external_references": [{"source_name": "mitre-attack", "external_id": "TA0002"}]},
 {"type": "x-mitre-tactic", "id": "x-mitre-tactic--a", "name": "Credential Access", "x_mitre_shortname": "credential-access",
  "external_references": [{"source_name": "mitre-attack", "external_id": "TA0006"}]},
 {"type": "attack-pattern", "id": "attack-pattern--1", "name": "Brute Force", "modified": "2024-01-01T00:00:00Z",
  "external_references": [{"source_name": "capec", "external_id": "CAPEC-49"}, {"source_name": "mitre-attack", "external_id": "T1110"}],
  "kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": "credential-access"}, {"kill_chain_name": "other", "phase_name": "x"}]},
 {"type": "attack-pattern", "id": "attack-pattern--2", "name": "Old Brute Force", "modified": "2023-01-01T00:00:00Z",
  "external_references": [{"source_name": "mitre-attack", "external_id": "T1110"}]},
 {"type": "attack-pattern", "id": "attack-pattern--3", "name": "Password Guessing", "x_mitre_is_subtechnique": true,
  "external_references": [{"source_name": "mitre-attack", "external_id": "T1110.001"}],
  "kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": "credential-access"}]},
 {"type": "attack-pattern", "id": "attack-pattern--4", "name": "Gone", "revoked": true,
  "external_references": [{"source_name": "mitre-attack", "external_id": "T1000"}]},
 {"type": "attack-pattern", "id": "attack-pattern--5", "name": "Old", "x_mitre_deprecated": true,
  "external_references": [{"source_name": "mitre-attack", "external_id": "T1001"}]},
 {"type": "attack-pattern", "id": "attack-pattern--6", "name": "No ID", "external_references": []},
 {"type": "intrusion-set", "id": "intrusion-set--1", "name": "APT0"},
 {"type": "x-mitre-matrix", "id": "x-mitre-matrix--1", "tactic_refs": ["x-mitre-tactic--a", "x-mitre-tactic--b"]}
], "extra": {"ignored": [1, 2]}}`

func TestParseMini(t *testing.T) {
	c, err := Parse(strings.NewReader(miniBundle), "mini.json")
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Objects: 10, Techniques: 1, Subtechniques: 1, Tactics: 2, Revoked: 1, Deprecated: 1, NoID: 1, Duplicates: 1}
	if c.Counts != want {
		t.Fatalf("counts %+v, want %+v", c.Counts, want)
	}
	if bf, _ := c.Technique("T1110"); bf == nil || bf.Name != "Brute Force" || !slices.Equal(bf.Tactics, []string{"credential-access"}) {
		t.Errorf("T1110 = %+v: want the later modified duplicate, mitre-attack phases only", bf)
	}
	if got := []string{c.Tactics()[0].ID, c.Tactics()[1].ID}; !slices.Equal(got, []string{"TA0006", "TA0002"}) {
		t.Errorf("tactic order %v, want the matrix's", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"not json", "nope", "bad.json: at byte"},
		{"not an object", "[1]", "want a STIX bundle"},
		{"not a bundle", `{"type": "indicator", "objects": []}`, `type "indicator", want bundle`},
		{"no objects", `{"type": "bundle"}`, "no objects"},
		{"objects not array", `{"objects": {}}`, "objects: want an array"},
		{"bad object", `{"objects": [{"type": 5}]}`, "object 1"},
		{"bad technique ID", `{"objects": [{"type": "attack-pattern", "id": "attack-pattern--9", "external_references": [{"source_name": "mitre-attack", "external_id": "X1"}]}]}`, `object 1 (attack-pattern--9): attack-pattern ID "X1"`},
		{"tactic no short name", `{"objects": [{"type": "x-mitre-tactic", "external_references": [{"source_name": "mitre-attack", "external_id": "TA0001"}]}]}`, "no x_mitre_shortname"},
		{"truncated", miniBundle[:400], "bad.json: at byte"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.in), "bad.json")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "holds none of") {
		t.Errorf("Load(empty dir) = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("Load(missing) succeeded")
	}
}

func TestNormalizeID(t *testing.T) {
	for in, want := range map[string]string{"t1059.001": "T1059.001", " T1110 ": "T1110", "T1059.1": "", "TA0001": "", "T10590": ""} {
		got, err := NormalizeID(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("NormalizeID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// BenchmarkLoad measures loading the shared ATT&CK bundle: time, and the
// heap the loaded catalog keeps (retained-B).
func BenchmarkLoad(b *testing.B) {
	dir := testenv.SharedData(b, "attack")
	var keep *Catalog
	var before, after runtime.MemStats
	for b.Loop() {
		c, err := Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		keep = c
	}
	keep = nil
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep, _ = Load(dir)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "retained-B")
	runtime.KeepAlive(keep)
}

// FuzzParse checks that no bundle makes Parse panic, and that a catalog
// it returns is consistent.
func FuzzParse(f *testing.F) {
	f.Add([]byte(miniBundle))
	f.Add([]byte(`{"type": "bundle", "objects": []}`))
	f.Add([]byte(`{"objects": [{"type": "attack-pattern", "revoked": true, "external_references": [{"source_name": "mitre-attack", "external_id": "T1000"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(bytes.NewReader(data), "fuzz.json")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.json") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		all := c.Techniques()
		if len(all) != c.Counts.Techniques+c.Counts.Subtechniques {
			t.Fatalf("%d techniques, counts %+v", len(all), c.Counts)
		}
		for _, tc := range all {
			if _, err := NormalizeID(tc.ID); err != nil {
				t.Fatalf("loaded %q: %v", tc.ID, err)
			}
			if tc.IsSubtechnique() != strings.HasPrefix(tc.ID, tc.Parent+".") {
				t.Fatalf("%s has parent %q", tc.ID, tc.Parent)
			}
			if err := c.Check(tc.ID); err != nil {
				t.Fatalf("Check(%s) = %v for a loaded technique", tc.ID, err)
			}
		}
		if len(c.Tactics()) != c.Counts.Tactics {
			t.Fatalf("%d tactics, counts %+v", len(c.Tactics()), c.Counts)
		}
	})
}

func TestParseTooLarge(t *testing.T) {
	defer func(n int64) { MaxBundleSize = n }(MaxBundleSize)
	MaxBundleSize = int64(len(miniBundle)) - 10
	if _, err := Parse(strings.NewReader(miniBundle), "big.json"); err == nil || !strings.Contains(err.Error(), "big.json: larger than") {
		t.Fatalf("err = %v, want a size error naming the file", err)
	}
	MaxBundleSize = int64(len(miniBundle))
	if _, err := Parse(strings.NewReader(miniBundle), "fits.json"); err != nil {
		t.Fatalf("a bundle of exactly the limit: %v", err)
	}
}

func TestCoverage(t *testing.T) {
	c := loadShared(t)
	cov, problems := c.Coverage([]string{"T1110.001", "t1110.003", "T1110", "T1059.001", "T1190", "T1066", "T1064", "T9999", "T9999", "bogus"})
	var msgs []string
	for _, p := range problems {
		msgs = append(msgs, p.Error())
	}
	if len(problems) != 4 || !errors.Is(problems[0], ErrRevoked) || !errors.Is(problems[1], ErrDeprecated) ||
		!errors.Is(problems[2], ErrUnknown) || !errors.Is(problems[3], ErrBadID) {
		t.Errorf("problems %q, want revoked T1066, deprecated T1064, unknown T9999 (once), malformed bogus", msgs)
	}
	if len(cov) != 14 {
		t.Fatalf("%d tactics, want 14", len(cov))
	}
	got := make(map[string]TacticCoverage)
	for _, tc := range cov {
		got[tc.Tactic.ShortName] = tc
	}
	ca := got["credential-access"]
	if !slices.Equal(ca.Covered, []string{"T1110"}) || !slices.Equal(ca.Named, []string{"T1110", "T1110.001", "T1110.003"}) {
		t.Errorf("credential-access: covered %v named %v", ca.Covered, ca.Named)
	}
	if ex := got["execution"]; !slices.Equal(ex.Covered, []string{"T1059"}) || !slices.Equal(ex.Named, []string{"T1059.001"}) {
		t.Errorf("execution: covered %v named %v, want T1059 through its sub-technique", ex.Covered, ex.Named)
	}
	if ia := got["initial-access"]; !slices.Equal(ia.Covered, []string{"T1190"}) {
		t.Errorf("initial-access: covered %v", ia.Covered)
	}
	if d := got["discovery"]; len(d.Covered) != 0 || d.Techniques == 0 {
		t.Errorf("discovery: %+v, want techniques and none covered", d)
	}
	// Techniques per tactic add up to the techniques of the catalog,
	// counted once per tactic they serve.
	total, want := 0, 0
	for _, tc := range cov {
		total += tc.Techniques
	}
	for _, tc := range c.Techniques() {
		if !tc.IsSubtechnique() {
			want += len(tc.Tactics)
		}
	}
	if total != want {
		t.Errorf("techniques per tactic add up to %d, want %d", total, want)
	}
}
