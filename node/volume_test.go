package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

// A mesh that holds many policies commits the next one as fast as an
// empty mesh does. Two single-node meshes run side by side, one empty and
// one holding volumePolicies operator blocks (committed through the admin
// API as bulk commands); single blocks are then committed through each
// node's admin API in alternation, so that whatever else loads the
// machine loads both samples alike, and the median commit on the full
// node must stay within twice the empty node's.
func TestCommitLatencyFlatWithManyPolicies(t *testing.T) {
	const volumePolicies = 100_000
	empty, emptyAPI := startVolumeNode(t)
	full, fullAPI := startVolumeNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := loadPolicies(ctx, full, fullAPI, volumePolicies, 0); err != nil {
		t.Fatal(err)
	}
	if got := full.Consensus().PolicyCount(); got < volumePolicies {
		t.Fatalf("the full node holds %d policies, want %d", got, volumePolicies)
	}
	// Both nodes have settled: their responders hold what was committed.
	waitUntil(t, "the full node's responders to hold every policy", func() bool {
		return full.reconciler().Stats().Added >= volumePolicies
	})

	const samples = 41
	emptyCmds := presignBlocks(t, empty, samples, 1<<22)
	fullCmds := presignBlocks(t, full, samples, 1<<22)
	var onEmpty, onFull []time.Duration
	for i := range samples {
		for _, s := range []struct {
			api  *admin.Client
			cmd  intel.OperatorSigned
			into *[]time.Duration
		}{{emptyAPI, emptyCmds[i], &onEmpty}, {fullAPI, fullCmds[i], &onFull}} {
			t0 := time.Now()
			if _, err := s.api.SubmitOperator(ctx, s.cmd); err != nil {
				t.Fatalf("commit %d: %v", i, err)
			}
			*s.into = append(*s.into, time.Since(t0))
		}
	}
	me, mf := median(onEmpty), median(onFull)
	t.Logf("median commit through the admin API: empty %s, holding %d policies %s", me, volumePolicies, mf)
	if mf > 2*me {
		t.Errorf("median commit with %d policies held is %s, more than twice the empty node's %s", volumePolicies, mf, me)
	}
	if got := full.Consensus().PolicyCount(); got != volumePolicies+samples {
		t.Errorf("the full node holds %d policies, want %d", got, volumePolicies+samples)
	}
}

// interleaved is how many commits BenchmarkAdminCommit alternates
// between the loaded node and an empty one (p50-vs-empty).
const interleaved = 400

// volumeIdle is how long BenchmarkAdminCommit lets a loaded node idle
// before it measures idle-rss-MB.
const volumeIdle = 20 * time.Second

// BenchmarkAdminCommit measures committing one operator block through a
// node's admin API (its Unix socket) on a single-node mesh that already
// holds held policies: latency of sequential commits (p50, p99), the
// throughput of 16 concurrent clients, and the process's RSS once the
// policies are held (rss-MB, right after loading them; idle-rss-MB,
// after volumeIdle without writes, with its idle-anon-MB and
// idle-file-MB). Of the sequential commits it also reports the process's
// CPU time (cpu-ms/op, background work included), minor page faults
// (minflt/op), bytes allocated (alloc-KB/op), and the collections run
// during them and their CPU (gc-cycles, gc-cpu-ms/op), which tell a
// commit's own cost from that of holding a large heap, and the
// compliance checks run meanwhile (checks: each compares every block
// enforced with the desired state, every 30 s, at a cost that grows with
// the policies held). It then alternates interleaved commits between
// the node and an empty one started beside it, in this process, and
// reports the ratio of their medians (p50-vs-empty): whatever else loads
// the machine (the benchmarks run on shared machines) loads both alike,
// so that the ratio is the cost of what the node holds, where the p50
// of one size and the next are measured minutes apart.
// MESHWARD_VOLUME_PROFILE=dir writes, for each number of policies held,
// a heap profile and the process's smaps once they are held, and a CPU
// profile and an execution trace of the sequential commits alone (the
// trace shows what they wait for: go tool trace -pprof=syscall).
// Responders run in dry run.
//
//	go test ./node -run '^$' -bench BenchmarkAdminCommit -benchtime 400x
func BenchmarkAdminCommit(b *testing.B) {
	for _, held := range []int{0, 10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			n, api := startVolumeNode(b)
			ctx := context.Background()
			if err := loadPolicies(ctx, n, api, held, 0); err != nil {
				b.Fatal(err)
			}
			waitUntil(b, "the responders to hold every policy", func() bool { return n.reconciler().Stats().Added >= uint64(held) })
			rss, anon, file := rssMB()
			// Idle: after volumeIdle without writes, Badger's table
			// builders have given back the buffers their pool keeps
			// (one every 2 s of quiet), as on a node between bursts.
			time.Sleep(volumeIdle)
			idle, idleAnon, idleFile := rssMB()
			var mem runtime.MemStats
			runtime.ReadMemStats(&mem)
			heapMB := float64(mem.HeapInuse) / (1 << 20)
			if dir := os.Getenv("MESHWARD_VOLUME_PROFILE"); dir != "" {
				writeHeapProfile(b, filepath.Join(dir, fmt.Sprintf("heap-%d.pprof", held)))
				copySmaps(b, filepath.Join(dir, fmt.Sprintf("smaps-%d.txt", held)))
			}
			cmds := presignBlocks(b, n, b.N, 1<<22)
			lat := make([]time.Duration, 0, b.N)
			stopCPU := func() {}
			if dir := os.Getenv("MESHWARD_VOLUME_PROFILE"); dir != "" {
				stopCPU = startCPUProfile(b, filepath.Join(dir, fmt.Sprintf("cpu-commit-%d.pprof", held)))
				stopTrace := startTrace(b, filepath.Join(dir, fmt.Sprintf("trace-commit-%d.out", held)))
				stop := stopCPU
				stopCPU = func() { stopTrace(); stop() }
			}
			gc0 := gcStats()
			checks0 := n.compliance.c.Status().Checks
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				if _, err := api.SubmitOperator(ctx, cmds[i]); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			stopCPU()
			gc1 := gcStats()
			b.ReportMetric(rss, "rss-MB")
			b.ReportMetric(idle, "idle-rss-MB")
			b.ReportMetric(idleAnon, "idle-anon-MB")
			b.ReportMetric(idleFile, "idle-file-MB")
			b.ReportMetric(float64(gc1.cycles-gc0.cycles), "gc-cycles")
			b.ReportMetric(float64(n.compliance.c.Status().Checks-checks0), "checks")
			b.ReportMetric((gc1.cpu-gc0.cpu)*1000/float64(b.N), "gc-cpu-ms/op")
			b.ReportMetric((gc1.procCPU-gc0.procCPU)*1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(gc1.minflt-gc0.minflt)/float64(b.N), "minflt/op")
			b.ReportMetric(float64(gc1.alloc-gc0.alloc)/1024/float64(b.N), "alloc-KB/op")
			b.ReportMetric(anon, "anon-MB")
			b.ReportMetric(file, "file-MB")
			b.ReportMetric(heapMB, "heap-MB")
			slices.Sort(lat)
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")

			// The same commits, alternated with an empty node's in this
			// process: what loads the machine meanwhile (other processes,
			// this process's heap and background work) loads both
			// samples alike, and the ratio of their medians is the cost
			// of what this node holds alone. The empty node starts now,
			// so that the figures above are of the loaded node alone.
			empty, emptyAPI := startVolumeNode(b)
			fullCmds := presignBlocks(b, n, interleaved, 1<<21)
			emptyCmds := presignBlocks(b, empty, interleaved, 1<<21)
			var onFull, onEmpty []time.Duration
			for i := range interleaved {
				for _, s := range []struct {
					api  *admin.Client
					cmd  intel.OperatorSigned
					into *[]time.Duration
				}{{api, fullCmds[i], &onFull}, {emptyAPI, emptyCmds[i], &onEmpty}} {
					t0 := time.Now()
					if _, err := s.api.SubmitOperator(ctx, s.cmd); err != nil {
						b.Fatal(err)
					}
					*s.into = append(*s.into, time.Since(t0))
				}
			}
			b.ReportMetric(float64(median(onFull))/float64(median(onEmpty)), "p50-vs-empty")

			// 16 concurrent clients.
			par := presignBlocks(b, n, b.N, 1<<23)
			var next atomic.Int64
			var wg sync.WaitGroup
			var failed atomic.Value
			start := time.Now()
			for range 16 {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= len(par) {
							return
						}
						if _, err := api.SubmitOperator(ctx, par[i]); err != nil {
							failed.Store(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(par))/time.Since(start).Seconds(), "commits/s-16clients")
		})
	}
}

// startVolumeNode starts a single-node mesh with its admin API on its
// Unix socket, and a client of it with the local admin token.
func startVolumeNode(tb testing.TB) (*Node, *admin.Client) {
	tb.Helper()
	dir := tb.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Site = "volume"
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Consensus.Bootstrap = true
	cfg.Consensus.BootstrapOperators = testBootstrapOperators()
	cfg.Detectors.Paths = []string{filepath.Join(dir, "auth.log")}
	if err := os.WriteFile(cfg.Detectors.Paths[0], nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	n, err := Start(context.Background(), cfg, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	waitUntil(tb, "the node to lead", func() bool { return n.Consensus().IsLeader() && n.Consensus().MeshID() != "" })
	sock := cfg.Admin.SocketPathIn(dir)
	tok, err := admin.ReadTokenFile(filepath.Join(filepath.Dir(sock), admin.DefaultTokenFileName))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := admin.NewClient(sock, tok, admin.ClientOptions{Timeout: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return n, c
}

// loadPolicies commits count operator blocks of distinct addresses in
// 10.0.0.0/8, starting at offset, through the admin API as bulk commands,
// four at a time.
func loadPolicies(ctx context.Context, n *Node, api *admin.Client, count, offset int) error {
	var cmds []intel.OperatorCommand
	for i := 0; i < count; i += intel.MaxBulkIndicators {
		m := min(intel.MaxBulkIndicators, count-i)
		inds := make([]intel.Indicator, m)
		for j := range inds {
			inds[j] = volumeAddr(offset + i + j)
		}
		cmds = append(cmds, intel.OperatorCommand{Op: intel.OpBlockBulk, Indicators: inds, TTLSeconds: 24 * 3600, Reason: "volume"})
	}
	var next atomic.Int64
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(cmds) {
					errs <- nil
					return
				}
				s, err := signFor(n, cmds[i])
				if err == nil {
					_, err = api.SubmitOperator(ctx, s)
				}
				if err != nil {
					errs <- fmt.Errorf("bulk command %d of %d: %w", i+1, len(cmds), err)
					return
				}
			}
		}()
	}
	var first error
	for range 4 {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// presignBlocks signs count single operator blocks of fresh addresses
// (from base on) for n's mesh.
func presignBlocks(tb testing.TB, n *Node, count, base int) []intel.OperatorSigned {
	tb.Helper()
	out := make([]intel.OperatorSigned, count)
	for i := range out {
		ind := volumeAddr(base + i)
		s, err := signFor(n, intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: 3600, Reason: "volume probe"})
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = s
	}
	return out
}

// signFor signs cmd for n's mesh with the test operator, valid for ten minutes.
func signFor(n *Node, cmd intel.OperatorCommand) (intel.OperatorSigned, error) {
	now := time.Now().UTC()
	nonce := strconv.FormatUint(volumeNonce.Add(1), 16)
	cmd.Header = intel.OperatorHeader{Mesh: n.Consensus().MeshID(), Nonce: strings.Repeat("0", 32-len(nonce)) + nonce,
		Issued: now, Expires: now.Add(10 * time.Minute)}
	return intel.SignOperatorCommand(testOperatorKey, cmd)
}

var volumeNonce atomic.Uint64

// volumeAddr is the i-th address of 10.0.0.0/8.
func volumeAddr(i int) intel.Indicator {
	v := 10<<24 | i&0xffffff
	return intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// rssMB is the process's resident set after a collection, in MiB, and
// its parts: anonymous memory (the Go heap, Badger's buffers) and pages
// of mapped files (the binary, Badger's tables and logs).
func rssMB() (total, anon, file float64) {
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		switch name {
		case "VmRSS":
			total = kb / 1024
		case "RssAnon":
			anon = kb / 1024
		case "RssFile":
			file = kb / 1024
		}
	}
	return total, anon, file
}

// writeHeapProfile writes the heap profile (in use after a collection)
// to path: MESHWARD_VOLUME_PROFILE=dir has the benchmark write one for
// each number of policies held, once they are held.
func writeHeapProfile(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		tb.Fatal(err)
	}
}

// gcCounts are the collections completed and the CPU time they took
// (runtime/metrics), to tell the cost of collecting a large heap apart
// from a commit's own.
type gcCounts struct {
	cycles uint64
	cpu    float64 // seconds, the collector's
	alloc  uint64  // bytes allocated
	// The process's CPU time (user and system, seconds) and minor page
	// faults (getrusage).
	procCPU float64
	minflt  int64
}

func gcStats() gcCounts {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return gcCounts{cycles: s[0].Value.Uint64(), cpu: s[1].Value.Float64(), alloc: s[2].Value.Uint64(),
		procCPU: tv(ru.Utime) + tv(ru.Stime), minflt: ru.Minflt}
}

// startCPUProfile profiles the CPU into path until the function it
// returns is called: MESHWARD_VOLUME_PROFILE=dir has the benchmark
// profile its sequential commits only, not the loading before them.
func startCPUProfile(tb testing.TB, path string) (stop func()) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			tb.Error(err)
		}
	}
}

// startTrace writes an execution trace into path until the function it
// returns is called: MESHWARD_VOLUME_PROFILE=dir has the benchmark trace
// its sequential commits, whose waits (syscalls, scheduling, channels)
// the CPU profile does not show (go tool trace -pprof=syscall and sched).
func startTrace(tb testing.TB, path string) (stop func()) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	return func() {
		trace.Stop()
		if err := f.Close(); err != nil {
			tb.Error(err)
		}
	}
}

// copySmaps copies the process's memory mappings and what each holds
// resident (/proc/self/smaps) to path: which files the file-backed part
// of the resident set is.
func copySmaps(tb testing.TB, path string) {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		tb.Log(err)
		return
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// waitUntil is waitFor for tests and benchmarks.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
