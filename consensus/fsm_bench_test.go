package consensus

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/testenv"
)

// FSM benchmarks, on the state machine alone (no raft), so that the
// figures show what the size of the state costs:
//
//	go test -run '^$' -bench 'BenchmarkFSM' -benchtime 2000x ./consensus/
//
// The held state is built with bulk operator blocks of benchBulk
// indicators each (the bulk path), once per size and process.

// benchBulk is the indicators of one bulk block while building a state:
// as many IPv4 addresses as fit intel.MaxOperatorBody (16 KiB), which is
// fewer than intel.MaxBulkIndicators.
const benchBulk = 400

// benchAddr is the i-th address of a block of the IPv4 space starting at
// base, clear of every floor.
func benchAddr(base [4]byte, i int) netip.Addr {
	n := binary.BigEndian.Uint32(base[:]) + uint32(i)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

// benchFSM is an FSM with the test mesh founded and entries applied with
// increasing indexes.
type benchFSM struct {
	f     *fsm
	index uint64
	clock time.Time
	next  int // the next fresh indicator for single blocks
}

func (s *benchFSM) apply(tb testing.TB, c Command) any {
	b, err := c.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	s.index++
	return s.f.Apply(&raft.Log{Index: s.index, Term: 1, Type: raft.LogCommand, Data: b})
}

func (s *benchFSM) mustApply(tb testing.TB, c Command) {
	if res := s.apply(tb, c); res != nil {
		tb.Fatalf("apply: %v", res)
	}
}

// newBenchFSM founds the mesh and applies held operator blocks (no
// evidence, one reason), with expiries spread over a day, then allows
// allows and protected ranges.
func newBenchFSM(tb testing.TB, held, allows, protected int) *benchFSM {
	s := &benchFSM{f: newFSM(nil), clock: t0}
	s.mustApply(tb, Command{Type: CmdInit, At: t0.Add(-time.Hour), Init: testInit()})
	for i := 0; i < held; i += benchBulk {
		c := intel.OperatorCommand{Op: intel.OpBlockBulk, Reason: "bench", TTLSeconds: int64(24*time.Hour/time.Second) + int64(i/benchBulk)}
		for j := i; j < min(held, i+benchBulk); j++ {
			c.Indicators = append(c.Indicators, intel.IndicatorFromAddr(benchAddr([4]byte{11, 0, 0, 0}, j)))
		}
		s.mustApply(tb, opCmd(signOp(tb, testOperatorKey, testMeshID, s.clock, c), s.clock))
	}
	// Allows of /24s and protected /28s among the addresses the
	// benchmark blocks next (12.0.0.0 on), without covering them.
	for i := range allows {
		p := netip.PrefixFrom(benchAddr([4]byte{12, 128, 0, 0}, i*256), 24)
		ind, err := intel.NewIndicator(intel.CIDR, p.String())
		if err != nil {
			tb.Fatal(err)
		}
		c := intel.OperatorCommand{Op: intel.OpAllow, Indicator: &ind, Reason: "bench", TTLSeconds: int64(48 * time.Hour / time.Second)}
		s.mustApply(tb, opCmd(signOp(tb, testOperatorKey, testMeshID, s.clock, c), s.clock))
	}
	for i := range protected {
		p := netip.PrefixFrom(benchAddr([4]byte{12, 0, 0, 0}, (i+1)<<12), 28)
		c := intel.OperatorCommand{Op: intel.OpProtect, Prefix: p.String()}
		s.mustApply(tb, opCmd(signOp(tb, testOperatorKey, testMeshID, s.clock, c), s.clock))
	}
	return s
}

// blocks returns n signed operator blocks of fresh addresses (12.0.0.0
// on, skipping the protected /28s), encoded as log entries.
//
// The clock moves on 11 minutes first, so that the nonces of the commands
// before have expired (the FSM holds at most maxNonces live ones).
func (s *benchFSM) blocks(tb testing.TB, n int) [][]byte {
	s.clock = s.clock.Add(11 * time.Minute)
	out := make([][]byte, n)
	for i := range out {
		a := benchAddr([4]byte{12, 0, 0, 0}, s.next)
		s.next++
		if s.next&0xfff < 16 {
			s.next += 16
		}
		ind := intel.IndicatorFromAddr(a)
		c := intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, Reason: "bench", TTLSeconds: int64(time.Hour / time.Second)}
		b, err := opCmd(signOp(tb, testOperatorKey, testMeshID, s.clock, c), s.clock).Encode()
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

var benchStates = map[string]*benchFSM{}

func cachedBenchFSM(tb testing.TB, held, allows, protected int) *benchFSM {
	key := fmt.Sprint(held, allows, protected)
	if s, ok := benchStates[key]; ok {
		return s
	}
	s := newBenchFSM(tb, held, allows, protected)
	benchStates[key] = s
	return s
}

func benchSizes() []struct {
	name string
	n    int
} {
	return []struct {
		name string
		n    int
	}{{"held=0", 0}, {"held=10k", 10_000}, {"held=100k", 100_000}, {"held=1M", 1_000_000}}
}

// BenchmarkFSMApplyOperatorBlock is the cost of applying one signed
// operator block of a new indicator (signature check included) with n
// policies held: it should not grow with n. cpu-ns/op is the process's
// CPU time per entry, collector included.
func BenchmarkFSMApplyOperatorBlock(b *testing.B) {
	run := func(b *testing.B, s *benchFSM) {
		entries := s.blocks(b, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := int64(testenv.ProcessCPU(b))
		for i := range b.N {
			s.index++
			if res := s.f.Apply(&raft.Log{Index: s.index, Term: 1, Type: raft.LogCommand, Data: entries[i]}); res != nil {
				b.Fatalf("apply: %v", res)
			}
		}
		b.ReportMetric(float64(int64(testenv.ProcessCPU(b))-cpu0)/float64(b.N), "cpu-ns/op")
	}
	for _, size := range benchSizes() {
		b.Run(size.name, func(b *testing.B) { run(b, cachedBenchFSM(b, size.n, 0, 0)) })
	}
	b.Run("held=1M,allows=1k,protected=1k", func(b *testing.B) { run(b, cachedBenchFSM(b, 1_000_000, 1000, 1000)) })
}

// BenchmarkFSMApplyBulkBlock is the cost of one signed bulk block of
// benchBulk new addresses, with n policies held; per-indicator is the
// process CPU per indicator.
func BenchmarkFSMApplyBulkBlock(b *testing.B) {
	run := func(b *testing.B, s *benchFSM) {
		s.clock = s.clock.Add(11 * time.Minute)
		entries := make([][]byte, b.N)
		for i := range entries {
			c := intel.OperatorCommand{Op: intel.OpBlockBulk, Reason: "bench", TTLSeconds: int64(time.Hour / time.Second)}
			for range benchBulk {
				c.Indicators = append(c.Indicators, intel.IndicatorFromAddr(benchAddr([4]byte{13, 0, 0, 0}, s.next)))
				s.next++
			}
			data, err := opCmd(signOp(b, testOperatorKey, testMeshID, s.clock, c), s.clock).Encode()
			if err != nil {
				b.Fatal(err)
			}
			entries[i] = data
		}
		b.ResetTimer()
		cpu0 := int64(testenv.ProcessCPU(b))
		for i := range b.N {
			s.index++
			if res := s.f.Apply(&raft.Log{Index: s.index, Term: 1, Type: raft.LogCommand, Data: entries[i]}); res != nil {
				b.Fatalf("apply: %v", res)
			}
		}
		b.ReportMetric(float64(int64(testenv.ProcessCPU(b))-cpu0)/float64(b.N*benchBulk), "cpu-ns/indicator")
	}
	for _, size := range []int{0, 3} {
		sz := benchSizes()[size]
		b.Run(sz.name, func(b *testing.B) { run(b, cachedBenchFSM(b, sz.n, 0, 0)) })
	}
}

// BenchmarkFSMVetoAndStore is the FSM's own share of an operator block,
// without decoding or the signature check: the veto (protected ranges,
// member addresses, allows) and the store of a new block, under the lock.
func BenchmarkFSMVetoAndStore(b *testing.B) {
	run := func(b *testing.B, s *benchFSM) {
		s.clock = s.clock.Add(11 * time.Minute)
		ps := make([]intel.Policy, b.N)
		for i := range ps {
			a := benchAddr([4]byte{12, 0, 0, 0}, s.next)
			s.next++
			if s.next&0xfff < 16 {
				s.next += 16
			}
			ps[i] = intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "bench", "operator:bench", s.clock, time.Hour)
		}
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := int64(testenv.ProcessCPU(b))
		for i := range b.N {
			s.f.mu.Lock()
			if rerr := s.f.blockVeto(CmdOperator, ps[i].Indicator, s.clock); rerr != nil {
				b.Fatal(rerr)
			}
			s.f.store(ps[i], s.clock)
			s.f.mu.Unlock()
		}
		b.ReportMetric(float64(int64(testenv.ProcessCPU(b))-cpu0)/float64(b.N), "cpu-ns/op")
	}
	for _, size := range benchSizes() {
		b.Run(size.name, func(b *testing.B) { run(b, cachedBenchFSM(b, size.n, 0, 0)) })
	}
	b.Run("held=1M,allows=1k,protected=1k", func(b *testing.B) { run(b, cachedBenchFSM(b, 1_000_000, 1000, 1000)) })
}

// BenchmarkFSMMemory reports the heap the FSM holds per policy, measured
// after a collection, for operator blocks without evidence sharing one
// reason. The change log (a fixed ring, full here) is included; its share
// is reported apart.
func BenchmarkFSMMemory(b *testing.B) {
	for _, size := range benchSizes()[2:] {
		b.Run(size.name, func(b *testing.B) {
			var s *benchFSM
			for range b.N {
				s = nil
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				s = newBenchFSM(b, size.n, 0, 0)
				runtime.GC()
				runtime.ReadMemStats(&after)
				n := float64(s.f.policies.len())
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/policy")
				ring := float64(cap(s.f.policies.changes.entries)) * float64(unsafe.Sizeof(rec{}))
				b.ReportMetric(ring/n, "log-B/policy")
			}
			runtime.KeepAlive(s)
		})
	}
}

// BenchmarkFSMPage is one page of 100 policies from a cursor at 1M held.
func BenchmarkFSMPage(b *testing.B) {
	s := cachedBenchFSM(b, 1_000_000, 0, 0)
	cursors := make([]string, 1024)
	for i := range cursors {
		cursors[i] = formatID(uint64(i) * (^uint64(0) / uint64(len(cursors))))
	}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		page, _ := s.f.policyPage(cursors[i%len(cursors)], 100, now)
		if len(page) != 100 {
			b.Fatalf("page of %d", len(page))
		}
	}
}

// BenchmarkFSMSnapshot takes and persists a snapshot of 1M policies;
// lock-ns is how long Snapshot held the lock.
func BenchmarkFSMSnapshot(b *testing.B) {
	s := cachedBenchFSM(b, 1_000_000, 0, 0)
	var locked time.Duration
	var size int64
	b.ResetTimer()
	cpu0 := int64(testenv.ProcessCPU(b))
	defer func() { b.ReportMetric(float64(int64(testenv.ProcessCPU(b))-cpu0)/float64(b.N), "cpu-ns/op") }()
	for range b.N {
		start := time.Now()
		snap, err := s.f.Snapshot()
		locked += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		sink := &countSink{}
		if err := snap.Persist(sink); err != nil {
			b.Fatal(err)
		}
		snap.Release()
		size = sink.n
	}
	b.ReportMetric(float64(locked.Nanoseconds())/float64(b.N), "lock-ns")
	b.ReportMetric(float64(size), "bytes")
}

// BenchmarkFSMRestore restores a snapshot of 1M policies.
func BenchmarkFSMRestore(b *testing.B) {
	s := cachedBenchFSM(b, 1_000_000, 0, 0)
	snap := snapshotBytes(b, s.f)
	b.ResetTimer()
	cpu0 := int64(testenv.ProcessCPU(b))
	defer func() { b.ReportMetric(float64(int64(testenv.ProcessCPU(b))-cpu0)/float64(b.N), "cpu-ns/op") }()
	for range b.N {
		f := newFSM(nil)
		if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
			b.Fatal(err)
		}
		if f.policies.len() != s.f.policies.len() {
			b.Fatalf("restored %d policies, want %d", f.policies.len(), s.f.policies.len())
		}
	}
}

type countSink struct{ n int64 }

func (s *countSink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }
func (s *countSink) ID() string                  { return "count" }
func (s *countSink) Close() error                { return nil }
func (s *countSink) Cancel() error               { return nil }
