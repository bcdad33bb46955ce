package store

import (
	"crypto/ed25519"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/testenv"
)

// BenchmarkPutEnvelopeConcurrent stores distinct sightings from many
// origins with N goroutines calling PutEnvelope at once, on a durable
// on-disk store (SyncWrites): group commit shares one write and one sync
// among the callers waiting together. Reported as envelopes/s.
func BenchmarkPutEnvelopeConcurrent(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run("goroutines="+itoa(n), func(b *testing.B) {
			s := openStore(b, DefaultOptions(b.TempDir()))
			benchPutConcurrent(b, s, n)
		})
	}
}

func benchPutConcurrent(b *testing.B, s *Store, goroutines int) {
	keys := make([]intelKey, 64)
	for i := range keys {
		keys[i] = intelKey{k: newKey(b)}
	}
	inds := make([]intel.Indicator, 256)
	for i := range inds {
		inds[i] = intel.Indicator{Type: intel.IPv4, Value: "198.51.100." + itoa(i)}
	}
	// Sealing is not what is measured: prepare the envelopes first.
	envs := make([]*intel.Envelope, b.N)
	for i := range envs {
		k := &keys[i%len(keys)]
		k.seq++
		envs[i] = sighting(b, k.k, k.seq, inds[i%len(inds)], t0.Add(time.Duration(i)*time.Millisecond))
	}
	commits0, stored0 := s.group.commits.Load(), s.group.stored.Load()
	cpu0 := testenv.ProcessCPU(b)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(envs)) {
					return
				}
				if added, err := s.PutEnvelope(envs[i], t0); err != nil || !added {
					b.Errorf("put envelope %d: added %v, %v", i, added, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
	b.ReportMetric(float64((testenv.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/envelope")
	if commits := s.group.commits.Load() - commits0; commits > 0 {
		b.ReportMetric(float64(s.group.stored.Load()-stored0)/float64(commits), "envelopes/fsync")
	}
}

// intelKey is an origin's key and the last sequence number it sealed.
type intelKey struct {
	k   ed25519.PrivateKey
	seq uint64
}
