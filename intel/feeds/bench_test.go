package feeds

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// genPlain is a plain feed of n distinct IPv4 addresses and some comments,
// generated as it is read: the feed itself is never in memory.
type genPlain struct {
	n, i int
	buf  []byte
}

func (g *genPlain) Read(p []byte) (int, error) {
	for len(g.buf) < len(p) && g.i < g.n {
		if g.i%1000 == 0 {
			g.buf = append(g.buf, "# block of a thousand\n"...)
		}
		g.buf = fmt.Appendf(g.buf, "%d.%d.%d.%d ; entry %d\n", 10+g.i>>24&0x7f, g.i>>16&0xff, g.i>>8&0xff, g.i&0xff, g.i)
		g.i++
	}
	if len(g.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// heapLive samples the live heap after a collection.
func heapLive() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkParsePlain parses generated plain feeds of 100,000 and
// 1,000,000 entries and reports the time per feed, entries per second and
// the peak live heap seen during the parse (sampled every 50,000
// entries), which must not grow with the feed.
//
//	go test ./intel/feeds/ -run '^$' -bench BenchmarkParsePlain -benchtime 1x
func BenchmarkParsePlain(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			base := heapLive()
			var peak uint64
			for b.Loop() {
				seen := 0
				st, err := ParsePlain(&genPlain{n: n}, Options{File: "bench"}, func(e Entry) error {
					seen++
					if seen%50_000 == 0 {
						if h := heapLive(); h > peak {
							peak = h
						}
					}
					return nil
				})
				if err != nil || st.Entries != n {
					b.Fatalf("%d entries, %v", st.Entries, err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-live-MB")
		})
	}
}

// BenchmarkRunnerPoll runs a feed of 100,000 and of 1,000,000 generated
// entries through the runner twice (a publisher that only counts, no
// rate limit): the first poll publishes every entry, the second finds
// every one unchanged. It reports the time of each poll and the peak live
// heap, which grows with the digest set only (16 bytes an entry, twice
// during a poll), never with the feed's text.
//
//	go test ./intel/feeds/ -run '^$' -bench BenchmarkRunnerPoll -benchtime 1x
func BenchmarkRunnerPoll(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			src := filepath.Join(dir, "feed.txt")
			f, err := os.Create(src)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(f, &genPlain{n: n}); err != nil {
				b.Fatal(err)
			}
			f.Close()
			base := heapLive()
			var peak uint64
			published := 0
			r, err := NewRunner(context.Background(), RunnerOptions{Dir: filepath.Join(dir, "state"), TempDir: dir,
				Assigned: func(string) bool { return false }, Rate: 1e9, MaxPerPoll: 1 << 30,
				Publish: func(context.Context, intel.IndicatorReport) error {
					published++
					if published%100_000 == 0 {
						if h := heapLive(); h > peak {
							peak = h
						}
					}
					return nil
				}})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			r.Set([]Config{{Name: "bench", Path: src, Interval: 24 * time.Hour}})
			var first, second time.Duration
			for b.Loop() {
				t0 := time.Now()
				res, err := r.Sync(context.Background(), "bench")
				first = time.Since(t0)
				if err != nil || res.Published != n {
					b.Fatalf("first poll %+v, %v", res, err)
				}
				t0 = time.Now()
				res, err = r.Sync(context.Background(), "bench")
				second = time.Since(t0)
				if err != nil || res.Unchanged != n || res.Published != 0 {
					b.Fatalf("second poll %+v, %v", res, err)
				}
				if h := heapLive(); h > peak {
					peak = h
				}
			}
			b.ReportMetric(first.Seconds(), "first-poll-s")
			b.ReportMetric(second.Seconds(), "second-poll-s")
			b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-live-MB")
		})
	}
}
