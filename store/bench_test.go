package store

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// benchOpeners are the stores benchmarks run against: in memory, on disk
// with an fsync per commit (the production default), and on disk without;
// the disk stores also encrypted.
func benchOpeners() []opener {
	return []opener{
		{"memory", func(t testing.TB) *Store { return openStore(t, Options{InMemory: true}) }},
		{"disk-sync", func(t testing.TB) *Store { return openStore(t, DefaultOptions(t.TempDir())) }},
		{"disk-nosync", func(t testing.TB) *Store {
			return openStore(t, Options{Dir: t.TempDir()})
		}},
		// The same, encrypted at rest (AES-256): the cost of a key.
		{"disk-sync-aes", func(t testing.TB) *Store { return openStore(t, encOptions(t.TempDir(), NewKey())) }},
		{"disk-nosync-aes", func(t testing.TB) *Store {
			return openStore(t, Options{Dir: t.TempDir(), EncryptionKey: NewKey()})
		}},
	}
}

// BenchmarkPutEnvelope stores distinct sightings, one per operation.
func BenchmarkPutEnvelope(b *testing.B) {
	for _, o := range benchOpeners() {
		b.Run(o.name, func(b *testing.B) {
			s := o.open(b)
			k := newKey(b)
			inds := make([]intel.Indicator, 256)
			for i := range inds {
				inds[i] = intel.Indicator{Type: intel.IPv4, Value: "198.51.100." + itoa(i)}
			}
			// Sealing is not what is measured: prepare the envelopes first.
			envs := make([]*intel.Envelope, b.N)
			for i := range envs {
				envs[i] = sighting(b, k, uint64(i+1), inds[i%len(inds)], t0.Add(time.Duration(i)*time.Millisecond))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.PutEnvelope(envs[i], t0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
		})
	}
}

// BenchmarkStoreLogs stores batches of 64 entries (raft's default
// MaxAppendEntries) of 256-byte commands.
func BenchmarkStoreLogs(b *testing.B) {
	const batch = 64
	data := bytes.Repeat([]byte("c"), 256)
	for _, o := range benchOpeners() {
		b.Run(o.name, func(b *testing.B) {
			r := o.open(b).RaftStore()
			logs := make([]*raft.Log, batch)
			for i := range logs {
				logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: t0}
			}
			next := uint64(1)
			b.ReportAllocs()
			for b.Loop() {
				for _, l := range logs {
					l.Index = next
					next++
				}
				if err := r.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(next-1)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkSightingsFor reads the sightings of one indicator among many.
func BenchmarkSightingsFor(b *testing.B) {
	s := openStore(b, Options{InMemory: true})
	ind := intel.Indicator{Type: intel.IPv4, Value: "203.0.113.1"}
	for n := range 20 {
		k := newKey(b)
		for i := range 50 {
			target := ind
			if i%10 != 0 {
				target = intel.Indicator{Type: intel.IPv4, Value: "198.51.100." + itoa(i)}
			}
			put(b, s, sighting(b, k, uint64(i+1), target, t0.Add(time.Duration(n)*time.Second)), t0)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		recs, err := s.SightingsFor(ind, time.Time{})
		if err != nil || len(recs) != 100 {
			b.Fatalf("%d records, %v", len(recs), err)
		}
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
