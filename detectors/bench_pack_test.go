package detectors

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// BenchmarkPackLines runs the whole built-in pack over the lines of the
// generated 1,000,000-line auth.log held in memory: the parsers and the
// engine alone, without reading or generating the log.
func BenchmarkPackLines(b *testing.B) {
	path := filepath.Join(b.TempDir(), "auth.log")
	writeAuthLog(b, path, 1000000)
	benchPackOver(b, path)
}

// benchPackOver feeds the lines of the log at path, held in memory, to
// the whole built-in pack, round and round.
func benchPackOver(b *testing.B, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	eng, err := NewRulesEngine(BuiltinRules(), EngineOptions{Now: fixedNow})
	if err != nil {
		b.Fatal(err)
	}
	emit := func(intel.Sighting) {}
	b.SetBytes(int64(len(data) / len(lines)))
	b.ReportAllocs()
	start := time.Now()
	n := 0
	for b.Loop() {
		eng.Process(lines[n%len(lines)], emit)
		n++
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "lines/s")
}

// BenchmarkFamilies runs the whole built-in pack over the generated mixed
// log of each family (TestGeneratedFamilyLogs), held in memory.
func BenchmarkFamilies(b *testing.B) {
	for fi, f := range families {
		b.Run(f.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), f.name+".log")
			writeMixedLog(b, f, fi, path, 50000)
			benchPackOver(b, path)
		})
	}
}
