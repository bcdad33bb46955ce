package kev

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/internal/testenv"
)

func loadKEV(t testing.TB) *Catalog {
	t.Helper()
	c, err := Load(testenv.SharedData(t, "kev"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestLoadKEVShared(t *testing.T) {
	c := loadKEV(t)
	if c.Len() != 1404 || c.Version != "2025.08.25" || c.Title != "CISA Catalog of Known Exploited Vulnerabilities" {
		t.Fatalf("catalog %q version %q with %d entries, want version 2025.08.25 with 1404", c.Title, c.Version, c.Len())
	}
	if want := time.Date(2025, 8, 25, 17, 4, 19, 979600000, time.UTC); !c.Released.Equal(want) {
		t.Errorf("released %v, want %v", c.Released, want)
	}
	pan, ok := c.Lookup("CVE-2024-3400")
	if !ok || pan.Vendor != "Palo Alto Networks" || pan.Product != "PAN-OS" || !pan.Ransomware ||
		!pan.DateAdded.Equal(date("2024-04-12")) || !pan.DueDate.Equal(date("2024-04-19")) || !slices.Equal(pan.CWEs, []string{"CWE-20", "CWE-77"}) {
		t.Errorf("CVE-2024-3400 = %+v, %v", pan, ok)
	}
	git, ok := c.Lookup("CVE-2025-48384")
	if !ok || git.Vendor != "Git" || git.Ransomware || !slices.Equal(git.CWEs, []string{"CWE-59", "CWE-436"}) ||
		!strings.HasPrefix(git.Name, "Git Link Following") || !git.DueDate.Equal(date("2025-09-15")) {
		t.Errorf("CVE-2025-48384 = %+v, %v", git, ok)
	}
	if hb, ok := c.Lookup("CVE-2014-0160"); !ok || hb.Product != "OpenSSL" || hb.Ransomware {
		t.Errorf("CVE-2014-0160 = %+v, %v", hb, ok)
	}
	if _, ok := c.Lookup("CVE-2099-0001"); ok {
		t.Error("CVE-2099-0001 found")
	}
	entries := c.Entries()
	ransomware := 0
	for _, e := range entries {
		if e.Ransomware {
			ransomware++
		}
	}
	if ransomware != 293 {
		t.Errorf("%d entries known used by ransomware, want 293", ransomware)
	}
	if len(entries) != 1404 || entries[0].CVE != "CVE-2002-0367" || entries[len(entries)-1].CVE != "CVE-2025-54948" {
		t.Errorf("entries run from %s to %s, want CVE-2002-0367 to CVE-2025-54948", entries[0].CVE, entries[len(entries)-1].CVE)
	}
}

const miniKEV = `{"title": "t", "catalogVersion": "1", "dateReleased": "2025-01-01T00:00:00.000Z", "count": %d, "vulnerabilities": [%s]}`

func kevEntryJSON(id, ransomware, added string) string {
	return `{"cveID": "` + id + `", "vendorProject": "v", "product": "p", "vulnerabilityName": "n", "dateAdded": "` + added +
		`", "shortDescription": "s", "requiredAction": "r", "dueDate": "2025-02-01", "knownRansomwareCampaignUse": "` + ransomware + `", "notes": "", "cwes": []}`
}

func TestParseKEVErrors(t *testing.T) {
	ok := kevEntryJSON("CVE-2024-0001", "Known", "2025-01-01")
	for _, c := range []struct{ name, in, want string }{
		{"count", strings.Replace(miniKEV, "%d", "2", 1), "count says 2"},
		{"bad id", "", `cveID "CVE-24-1"`},
		{"twice", "", "listed twice"},
		{"bad date", "", "dateAdded"},
		{"bad ransomware", "", `knownRansomwareCampaignUse "Maybe"`},
		{"not object", "[]", "want a JSON object"},
		{"no version", `{"count": 0, "vulnerabilities": []}`, "no catalogVersion"},
		{"truncated", `{"catalogVersion": "1", "vulnerabilities": [` + ok[:40], "kev.json: at byte"},
	} {
		in := c.in
		switch c.name {
		case "count":
			in = strings.Replace(in, "%s", ok, 1)
		case "bad id":
			in = strings.Replace(strings.Replace(miniKEV, "%d", "1", 1), "%s", kevEntryJSON("CVE-24-1", "Known", "2025-01-01"), 1)
		case "twice":
			in = strings.Replace(strings.Replace(miniKEV, "%d", "2", 1), "%s", ok+","+ok, 1)
		case "bad date":
			in = strings.Replace(strings.Replace(miniKEV, "%d", "1", 1), "%s", kevEntryJSON("CVE-2024-0001", "Known", "01/01/2025"), 1)
		case "bad ransomware":
			in = strings.Replace(strings.Replace(miniKEV, "%d", "1", 1), "%s", kevEntryJSON("CVE-2024-0001", "Maybe", "2025-01-01"), 1)
		}
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(in), "kev.json")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "kev.json") {
				t.Errorf("err = %v, want one naming kev.json and containing %q", err, c.want)
			}
		})
	}
	good := strings.Replace(strings.Replace(miniKEV, "%d", "1", 1), "%s", ok, 1)
	c, err := Parse(strings.NewReader(good), "kev.json")
	if err != nil {
		t.Fatal(err)
	}
	if e, found := c.Lookup("CVE-2024-0001"); !found || !e.Ransomware {
		t.Fatalf("mini catalog: %+v, %v", e, found)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("Load(missing) succeeded")
	}
}

func loadFixture(t *testing.T) *NVD {
	t.Helper()
	n := NewNVD()
	if err := n.LoadFile(filepath.Join("testdata", "nvd-cves.json")); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNVDFixture(t *testing.T) {
	n := loadFixture(t)
	if n.Len() != 4 {
		t.Fatalf("%d CVEs, want 4", n.Len())
	}
	pan, _ := n.Lookup("CVE-2024-3400")
	if pan == nil || pan.Status != "Analyzed" || !strings.HasPrefix(pan.Description, "A command injection") ||
		!slices.Equal(pan.CWEs, []string{"CWE-77", "CWE-20"}) || !pan.CISAExploitAdd.Equal(date("2024-04-12")) ||
		!pan.Published.Equal(time.Date(2024, 4, 12, 8, 15, 6, 230000000, time.UTC)) {
		t.Fatalf("CVE-2024-3400 = %+v", pan)
	}
	want := []Score{
		{Version: "4.0", Vector: "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H", Base: 10, Severity: "CRITICAL", Source: "psirt@paloaltonetworks.com", Stated: 10},
		{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", Base: 10, Severity: "CRITICAL", Source: "nvd@nist.gov", Primary: true, Stated: 10},
	}
	if !slices.Equal(pan.Scores, want) {
		t.Errorf("CVE-2024-3400 scores %+v, want %+v", pan.Scores, want)
	}
	if best, _ := pan.Best(); best.Version != "4.0" {
		t.Errorf("best score %+v, want the 4.0 one", best)
	}
	hb, _ := n.Lookup("CVE-2014-0160")
	if hb == nil || hb.Status != "Modified" || len(hb.Scores) != 1 || hb.Scores[0].Base != 7.5 || hb.Scores[0].Severity != "HIGH" {
		t.Errorf("CVE-2014-0160 = %+v: want the newer record, scored 7.5 (the v2 metric not scored)", hb)
	}
	if eb, _ := n.Lookup("CVE-2017-0144"); eb == nil || len(eb.Scores) != 1 || eb.Scores[0].Version != "3.0" || eb.Scores[0].Base != 8.1 {
		t.Errorf("CVE-2017-0144 = %+v, want 3.0 scored 8.1", eb)
	}
	bad, _ := n.Lookup("CVE-2099-0001")
	if bad == nil || len(bad.Scores) != 0 {
		t.Errorf("CVE-2099-0001 = %+v, want no score", bad)
	}
	if len(n.Problems) != 2 || !strings.Contains(n.Problems[0], "nvd-cves.json: CVE-2099-0001: cvssMetricV31[0]") ||
		!strings.Contains(n.Problems[1], `version "3.0" but vector`) {
		t.Errorf("problems %q", n.Problems)
	}
}

func TestNVDErrors(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"format", `{"format": "NVD_CPE", "vulnerabilities": []}`, `format "NVD_CPE"`},
		{"no vulns", `{"format": "NVD_CVE"}`, "no vulnerabilities"},
		{"bad id", `{"vulnerabilities": [{"cve": {"id": "CVE-1", "published": "2024-01-01T00:00:00.000"}}]}`, `vulnerability 1 (CVE-1): id "CVE-1"`},
		{"bad time", `{"vulnerabilities": [{"cve": {"id": "CVE-2024-0001", "published": "yesterday"}}]}`, "published"},
		{"truncated", `{"vulnerabilities": [{"cve": {"id": "CVE-2024-0001", "publi`, "nvd.json: at byte"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := NewNVD().Parse(strings.NewReader(c.in), "nvd.json")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nvd.json") {
				t.Errorf("err = %v, want one naming nvd.json and containing %q", err, c.want)
			}
		})
	}
}

func TestScoreVector(t *testing.T) {
	// Scores from the CVSS specifications' calculators.
	for v, want := range map[string]float64{
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H":                    10,
		"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H":                    7.8,
		"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H":                    9.8,
		"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N": 9.3,
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N":                    0,
	} {
		s, err := ScoreVector(v)
		if err != nil || s.Base != want {
			t.Errorf("ScoreVector(%s) = %v, %v; want %v", v, s.Base, err, want)
		}
	}
	for _, v := range []string{"AV:N/AC:L/Au:N/C:P/I:N/A:N", "CVSS:2.0/AV:N", "CVSS:3.1/AV:N", "CVSS:4.0/AV:Z"} {
		if _, err := ScoreVector(v); err == nil {
			t.Errorf("ScoreVector(%s) succeeded", v)
		}
	}
	for score, want := range map[float64]string{0: "NONE", 0.1: "LOW", 3.9: "LOW", 4: "MEDIUM", 6.9: "MEDIUM", 7: "HIGH", 8.9: "HIGH", 9: "CRITICAL", 10: "CRITICAL"} {
		if got := Severity(score); got != want {
			t.Errorf("Severity(%v) = %s, want %s", score, got, want)
		}
	}
}

func TestRank(t *testing.T) {
	kev := loadKEV(t)
	n := loadFixture(t)
	for _, c := range []struct {
		cve  string
		want Priority
	}{
		// In KEV, known used by ransomware: 10 + 3 + 2.
		{"CVE-2024-3400", Priority{CVE: "CVE-2024-3400", Value: 15, CVSS: 10, Scored: true, Version: "4.0", KEV: true, Ransomware: true}},
		// In KEV, ransomware use unknown: 7.5 + 3.
		{"CVE-2014-0160", Priority{CVE: "CVE-2014-0160", Value: 10.5, CVSS: 7.5, Scored: true, Version: "3.1", KEV: true}},
		{"CVE-2017-0144", Priority{CVE: "CVE-2017-0144", Value: 13.1, CVSS: 8.1, Scored: true, Version: "3.0", KEV: true, Ransomware: true}},
		// Not in KEV, not scored.
		{"CVE-2099-0001", Priority{CVE: "CVE-2099-0001", Value: UnscoredBase, CVSS: UnscoredBase}},
		// In KEV but not in the NVD files.
		{"CVE-2025-48384", Priority{CVE: "CVE-2025-48384", Value: UnscoredBase + KEVBoost, CVSS: UnscoredBase, KEV: true}},
	} {
		if got := Rank(c.cve, n, kev); got != c.want {
			t.Errorf("Rank(%s) = %+v, want %+v", c.cve, got, c.want)
		}
	}
	// The same score ranks higher in KEV, and higher still with
	// ransomware.
	plain := Rank("CVE-2024-3400", n, nil)
	inKEV := Rank("CVE-2014-0160", nil, kev)
	if plain.Value != 10 || inKEV.Value != UnscoredBase+KEVBoost {
		t.Errorf("without KEV %+v, without NVD %+v", plain, inKEV)
	}
	a, b, c := Rank("CVE-2024-0001", nil, nil), Rank("CVE-2025-48384", nil, kev), Rank("CVE-2021-44228", nil, kev)
	if !(a.Value < b.Value && b.Value < c.Value) || !c.Ransomware {
		t.Errorf("unknown %v, KEV %v, KEV ransomware %v: want increasing", a.Value, b.Value, c.Value)
	}
}

// BenchmarkLoadKEV measures loading the shared KEV catalog, and the heap
// the loaded catalog keeps (retained-B).
func BenchmarkLoadKEV(b *testing.B) {
	dir := testenv.SharedData(b, "kev")
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep, _ := Load(dir)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "retained-B")
	runtime.KeepAlive(keep)
}

// FuzzParse checks that no KEV catalog or NVD document makes the parsers
// panic, and that what they load is consistent.
func FuzzParse(f *testing.F) {
	f.Add([]byte(strings.Replace(strings.Replace(miniKEV, "%d", "1", 1), "%s", kevEntryJSON("CVE-2024-0001", "Known", "2025-01-01"), 1)))
	if b, err := os.ReadFile(filepath.Join("testdata", "nvd-cves.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"vulnerabilities": [{"cve": {"id": "CVE-2024-0001", "published": "2024-01-01T00:00:00", "metrics": {"cvssMetricV40": [{"cvssData": {"vectorString": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}}]}}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := Parse(bytes.NewReader(data), "kev.json"); err == nil {
			if len(c.Entries()) != c.Len() {
				t.Fatalf("%d entries, Len %d", len(c.Entries()), c.Len())
			}
			for _, e := range c.Entries() {
				if !cveID.MatchString(e.CVE) {
					t.Fatalf("loaded %q", e.CVE)
				}
			}
		} else if !strings.Contains(err.Error(), "kev.json") {
			t.Fatalf("error %q does not name the file", err)
		}
		n := NewNVD()
		if err := n.Parse(bytes.NewReader(data), "nvd.json"); err != nil {
			if !strings.Contains(err.Error(), "nvd.json") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, c := range n.cves {
			for _, s := range c.Scores {
				if s.Base < 0 || s.Base > 10 || s.Severity != Severity(s.Base) {
					t.Fatalf("%s: score %+v", c.ID, s)
				}
			}
			if p := Rank(c.ID, n, nil); p.Value < 0 || p.Value > MaxPriority {
				t.Fatalf("%s: priority %+v", c.ID, p)
			}
		}
		if len(n.Problems) > MaxProblems {
			t.Fatalf("%d problems kept", len(n.Problems))
		}
	})
}

func TestParseTooLarge(t *testing.T) {
	defer func(n int64) { MaxFileSize = n }(MaxFileSize)
	nvd, err := os.ReadFile(filepath.Join("testdata", "nvd-cves.json"))
	if err != nil {
		t.Fatal(err)
	}
	MaxFileSize = int64(len(nvd)) - 10
	if err := NewNVD().Parse(bytes.NewReader(nvd), "big.json"); err == nil || !strings.Contains(err.Error(), "big.json: larger than") {
		t.Errorf("NVD: err = %v, want a size error naming the file", err)
	}
	good := strings.Replace(strings.Replace(miniKEV, "%d", "1", 1), "%s", kevEntryJSON("CVE-2024-0001", "Known", "2025-01-01"), 1)
	MaxFileSize = int64(len(good)) - 10
	if _, err := Parse(strings.NewReader(good), "big.json"); err == nil || !strings.Contains(err.Error(), "big.json: larger than") {
		t.Errorf("KEV: err = %v, want a size error naming the file", err)
	}
	MaxFileSize = int64(len(nvd))
	if err := NewNVD().Parse(bytes.NewReader(nvd), "fits.json"); err != nil {
		t.Errorf("a file of exactly the limit: %v", err)
	}
}

func TestNVDLoadDir(t *testing.T) {
	n := NewNVD()
	if err := n.LoadDir("testdata"); err != nil || n.Len() != 4 {
		t.Fatalf("LoadDir(testdata): %v, %d CVEs; want 4", err, n.Len())
	}
	dir := t.TempDir()
	if err := NewNVD().LoadDir(dir); err == nil || !strings.Contains(err.Error(), "no .json files") {
		t.Errorf("empty dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"vulnerabilities": [}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := NewNVD().LoadDir(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "a.json")) {
		t.Errorf("bad file: %v, want an error naming it", err)
	}
}
