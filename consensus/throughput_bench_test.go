package consensus

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/testenv"
	"github.com/meshward/meshward/store"
)

// durableProposers is how many goroutines propose at once in
// BenchmarkCommitThroughput (-throughput.proposers): more proposers share
// more of each synced log write, and each waits longer for its commit.
var durableProposers = flag.Int("throughput.proposers", 64, "BenchmarkCommitThroughput: goroutines proposing at once")

// BenchmarkCommitThroughput measures commits per second and per-commit
// latency (p50, p99) on a 3-voter cluster over loopback libp2p whose raft
// logs are real Badger stores on disk, each commit synced before it is
// acknowledged (store.DefaultOptions), with durableProposers goroutines
// proposing at once, as a mesh under attack does.
//
// Each commit is an automatic block carrying two signed sightings, whose
// proofs every replica's verify cache already holds (gossip verified
// them). from=leader proposes on the leader; from=all spreads the
// proposers over the three nodes, so that two thirds of the proposals are
// forwarded to the leader. logwrite-p50-ms and logwrite-p99-ms time the
// log stores' writes (each synced; on the leader, before it replicates)
// and entries/logwrite is how many commits share one, over all three
// nodes: on a disk shared with other work, commit latency is mostly
// these.
func BenchmarkCommitThroughput(b *testing.B) {
	times := &storeTimes{}
	nodes := newDurableCluster(b, 3, times, func(c *Config) {
		c.VerifyCache = intel.NewVerifyCache(intel.DefaultVerifyCacheSize)
		productionTiming(c)
	})
	pool := warmBlockPool(b, nodes, 4096)
	var seq atomic.Int64
	next := func() Command { return pool[int(seq.Add(1))%len(pool)] }
	b.Run("from=leader", func(b *testing.B) {
		leader := leaderOf(nodes)
		if leader == nil {
			b.Fatal("no leader")
		}
		times.reset()
		runProposers(b, nodes, *durableProposers, func(int) *testNode { return leader }, next)
		times.report(b)
	})
	b.Run("from=all", func(b *testing.B) {
		times.reset()
		runProposers(b, nodes, *durableProposers, func(g int) *testNode { return nodes[g%len(nodes)] }, next)
		times.report(b)
	})
}

// bulkProposers is how many goroutines propose bulk commands at once in
// BenchmarkCommitBulk.
const bulkProposers = 4

// BenchmarkCommitBulk commits operator-signed bulk blocks, each of
// intel.MaxBulkIndicators fresh addresses, on the cluster of
// BenchmarkCommitThroughput from bulkProposers goroutines, and reports
// policies/s, the p50 and p99 per command, and the memory the process
// holds afterwards with b.N*MaxBulkIndicators policies on each of the
// three nodes: rss-MB (resident set, after a GC that returns freed memory
// to the system) and heap-MB (live Go heap), the whole cluster's, and
// rss-MB/node, a third of the RSS. -benchtime 50x commits 100,000
// policies, 500x a million.
func BenchmarkCommitBulk(b *testing.B) {
	times := &storeTimes{}
	nodes := newDurableCluster(b, 3, times, productionTiming)
	leader := leaderOf(nodes)
	if leader == nil {
		b.Fatal("no leader")
	}
	at := time.Now().UTC()
	cmds := make([]intel.OperatorSigned, b.N)
	for i := range cmds {
		c := intel.OperatorCommand{Op: intel.OpBlockBulk, Reason: "bench", TTLSeconds: int64(24 * time.Hour / time.Second)}
		c.Indicators = make([]intel.Indicator, intel.MaxBulkIndicators)
		for j := range c.Indicators {
			n := uint32(i*intel.MaxBulkIndicators + j)
			c.Indicators[j] = intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{11 + byte(n>>24), byte(n >> 16), byte(n >> 8), byte(n)}))
		}
		cmds[i] = signOp(b, testOperatorKey, leader.c.MeshID(), at, c)
	}
	var seq atomic.Int64
	next := func() Command { return Command{Type: CmdOperator, Operator: &cmds[seq.Add(1)-1]} }
	times.reset()
	rate := runProposers(b, nodes, bulkProposers, func(int) *testNode { return leader }, next)
	times.report(b)
	b.ReportMetric(rate*intel.MaxBulkIndicators, "policies/s")
	cmds = nil
	for _, n := range nodes {
		if got, want := len(n.c.Policies(time.Now())), b.N*intel.MaxBulkIndicators; got != want {
			b.Fatalf("node %s holds %d policies, want %d", shortID(n.id()), got, want)
		}
	}
	rss, heap := residentMemory(b)
	if *bulkHeapProfile != "" {
		writeHeapProfile(b, *bulkHeapProfile)
	}
	b.ReportMetric(float64(rss)/(1<<20), "rss-MB")
	b.ReportMetric(float64(rss)/(1<<20)/float64(len(nodes)), "rss-MB/node")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
}

// bulkHeapProfile names a file BenchmarkCommitBulk writes a heap profile
// to while the cluster still holds its policies (-memprofile is written
// after the cluster is closed).
var bulkHeapProfile = flag.String("bulk.heapprofile", "", "BenchmarkCommitBulk: write a heap profile of the loaded cluster to this file")

func writeHeapProfile(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		tb.Fatalf("write heap profile: %v", err)
	}
}

// residentMemory collects garbage, returns freed memory to the system and
// reports the process's resident set and live heap in bytes.
func residentMemory(tb testing.TB) (rss, heap uint64) {
	tb.Helper()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10, ms.HeapInuse
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0, 0
}

// productionTiming gives c raft's timing of a deployed node (Config's
// defaults), in place of the fast timing of the test clusters.
func productionTiming(c *Config) {
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = 0, 0, 0, 0
}

// warmBlockPool seals n automatic blocks, each proven by two sightings
// signed by nodes[0] and nodes[1], and opens every proof through every
// node's verify cache, as gossip does before a block is proposed.
func warmBlockPool(tb testing.TB, nodes []*testNode, n int) []Command {
	tb.Helper()
	now := time.Now().UTC()
	k0, k1 := nodes[0].edKey(tb), nodes[1].edKey(tb)
	pool := make([]Command, n)
	for i := range pool {
		ind, err := intel.NewIndicator(intel.IPv4, fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255))
		if err != nil {
			tb.Fatal(err)
		}
		p := intel.NewPolicy(intel.ActionBlock, ind, "bench", nodes[0].id(), now, time.Hour)
		pool[i] = Command{Type: CmdPutPolicy, At: now, Policy: &p, Proofs: [][]byte{
			sealSighting(tb, k0, uint64(2*i+1), ind, now), sealSighting(tb, k1, uint64(2*i+2), ind, now)}}
	}
	for _, nd := range nodes {
		for _, c := range pool {
			for _, raw := range c.Proofs {
				if _, err := nd.c.cfg.VerifyCache.Open(raw); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	return pool
}

// runProposers commits b.N commands from proposers goroutines, the g-th
// proposing through from(g), reports commits/s, the p50 and p99 of the
// per-commit latency and the process's CPU time per commit, waits until
// every node has applied them, and returns the commits/s.
func runProposers(b *testing.B, nodes []*testNode, proposers int, from func(g int) *testNode, next func() Command) float64 {
	ctx := context.Background()
	var issued atomic.Int64
	lats := make([][]time.Duration, proposers)
	errs := make(chan error, proposers)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := testenv.ProcessCPU(b)
	start := time.Now()
	for g := range proposers {
		n := from(g)
		wg.Go(func() {
			lat := make([]time.Duration, 0, b.N/proposers+1)
			defer func() { lats[g] = lat }()
			for issued.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := n.c.Propose(ctx, next()); err != nil {
					errs <- err
					return
				}
				lat = append(lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := testenv.ProcessCPU(b) - cpu0
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	rate := float64(len(all)) / elapsed.Seconds()
	b.ReportMetric(rate, "commits/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu-us/commit")
	waitApplied(b, nodes)
	return rate
}

// newDurableCluster is newClusterWith on durable nodes: each keeps its
// raft log and stable store in a Badger store on disk that syncs every
// write, and its snapshots in files.
func newDurableCluster(tb testing.TB, n int, times *storeTimes, opt func(*Config)) []*testNode {
	tb.Helper()
	log := testLogger(tb)
	return formCluster(tb, n, func(founder bool, secret string) *testNode {
		return newDurableNode(tb, log, founder, secret, times, opt)
	})
}

// storeTimes records how long the raft log store took for each batch of
// entries (its write and sync), over every node of a cluster.
type storeTimes struct {
	mu      sync.Mutex
	times   []time.Duration
	entries int
	gets    atomic.Int64 // reads that reached the store
}

func (s *storeTimes) add(d time.Duration, entries int) {
	s.mu.Lock()
	s.times = append(s.times, d)
	s.entries += entries
	s.mu.Unlock()
}

func (s *storeTimes) reset() {
	s.mu.Lock()
	s.times, s.entries = s.times[:0], 0
	s.mu.Unlock()
}

// report reports the p50 and p99 time of a log write and the entries per
// write since the last reset.
func (s *storeTimes) report(b *testing.B) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.times) == 0 {
		return
	}
	t := slices.Sorted(slices.Values(s.times))
	b.ReportMetric(float64(t[len(t)/2].Microseconds())/1000, "logwrite-p50-ms")
	b.ReportMetric(float64(t[len(t)*99/100].Microseconds())/1000, "logwrite-p99-ms")
	b.ReportMetric(float64(s.entries)/float64(len(t)), "entries/logwrite")
}

// timedLogStore times a log store's writes and counts its reads.
type timedLogStore struct {
	raft.LogStore
	times *storeTimes
}

func (l timedLogStore) GetLog(index uint64, log *raft.Log) error {
	l.times.gets.Add(1)
	return l.LogStore.GetLog(index, log)
}

func (l timedLogStore) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

func (l timedLogStore) StoreLogs(logs []*raft.Log) error {
	t0 := time.Now()
	err := l.LogStore.StoreLogs(logs)
	l.times.add(time.Since(t0), len(logs))
	return err
}

// newDurableNode starts a participant whose raft log and stable store are
// a Badger store in a fresh directory (synced writes) and whose snapshots
// are files. Cleanup closes consensus, then the store, then the host.
func newDurableNode(tb testing.TB, log *slog.Logger, bootstrap bool, token string, times *storeTimes, opt func(*Config)) *testNode {
	tb.Helper()
	dir := tb.TempDir()
	n := &testNode{key: newKey(tb), snaps: filepath.Join(dir, "raft"), gater: mustGater(tb)}
	n.h = newTestHost(tb, n.key, n.gater)
	n.cfg = testConfig(n, log, bootstrap, token, opt)
	st, err := store.Open(store.DefaultOptions(filepath.Join(dir, "store")))
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	if !st.SyncWrites() {
		tb.Fatal("the raft log store does not sync its writes")
	}
	snaps, err := raft.NewFileSnapshotStore(n.snaps, 2, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	rs := st.RaftStore()
	var logs raft.LogStore = rs
	if times != nil {
		logs = timedLogStore{rs, times}
	}
	c, err := New(context.Background(), n.h, logs, rs, snaps, n.cfg)
	if err != nil {
		tb.Fatalf("start consensus: %v", err)
	}
	n.c = c
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return n
}
