// Package refusal counts what a node's transport boundary refuses: streams,
// subscriptions and connections from peers that may not speak, each under
// the protocol it arrived on and a reason. Every part of a node that
// refuses keeps a Counter; the node exports them all as one Prometheus
// family, meshward_transport_refused_total{protocol,reason}
// (NewCollector). Each refusal is also logged at debug level, rate-limited,
// so that a stranger hammering the node cannot flood the log.
package refusal

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Key names one series: the protocol (or topic, or "connection") and the
// reason.
type Key struct{ Protocol, Reason string }

// Debug lines are limited to logRate per second with bursts of logBurst;
// the lines left out are counted and reported by the next one.
const (
	logRate  = 5
	logBurst = 20
)

// Counter counts refusals. The zero value is not usable; use New. It is
// safe for concurrent use. Callers name protocols and reasons from fixed
// sets, so the series stay few.
type Counter struct {
	log        *slog.Logger
	limit      *rate.Limiter
	suppressed atomic.Uint64

	mu     sync.RWMutex
	counts map[Key]*atomic.Uint64
}

// New returns a Counter that logs to log at debug level; nil discards.
func New(log *slog.Logger) *Counter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Counter{log: log, limit: rate.NewLimiter(logRate, logBurst), counts: make(map[Key]*atomic.Uint64)}
}

// Refuse counts one refusal of p on protocol for reason and logs it
// (debug, rate-limited). err, when not nil, says more.
func (c *Counter) Refuse(protocol, reason string, p peer.ID, err error) {
	c.counter(Key{protocol, reason}).Add(1)
	if !c.limit.Allow() {
		c.suppressed.Add(1)
		return
	}
	args := []any{"protocol", protocol, "reason", reason, "peer", p}
	if err != nil {
		args = append(args, "err", err)
	}
	if n := c.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	c.log.Debug("transport refused", args...)
}

func (c *Counter) counter(k Key) *atomic.Uint64 {
	c.mu.RLock()
	n, ok := c.counts[k]
	c.mu.RUnlock()
	if ok {
		return n
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok = c.counts[k]; !ok {
		n = new(atomic.Uint64)
		c.counts[k] = n
	}
	return n
}

// Count returns the refusals of protocol for reason so far.
func (c *Counter) Count(protocol, reason string) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if n, ok := c.counts[Key{protocol, reason}]; ok {
		return n.Load()
	}
	return 0
}

// Snapshot returns every series counted so far.
func (c *Counter) Snapshot() map[Key]uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[Key]uint64, len(c.counts))
	for k, n := range c.counts {
		out[k] = n.Load()
	}
	return out
}

var desc = prometheus.NewDesc("meshward_transport_refused_total",
	"Streams, subscriptions and connections refused at the transport boundary, by protocol and reason.",
	[]string{"protocol", "reason"}, nil)

// NewCollector exports the counters as meshward_transport_refused_total;
// series counted by several of them are summed. Nil counters are skipped.
func NewCollector(cs ...*Counter) prometheus.Collector { return collector(cs) }

type collector []*Counter

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- desc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	sum := make(map[Key]uint64)
	for _, cnt := range c {
		if cnt == nil {
			continue
		}
		for k, n := range cnt.Snapshot() {
			sum[k] += n
		}
	}
	for _, k := range sortedKeys(sum) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(sum[k]), k.Protocol, k.Reason)
	}
}

func sortedKeys(m map[Key]uint64) []Key {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Reason, b.Reason))
	})
	return keys
}
