package detectors

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// Anomaly rules.
//
// A threshold rule needs someone to say how many is too many. An anomaly
// rule learns it: per value of its key (an account, a virtual host, a
// destination port), it keeps an exponentially weighted moving mean and
// variance of the events counted in each time bucket, and fires when the
// bucket in progress climbs past the mean by Deviation standard
// deviations (and past MinCount), once the key has been watched for
// Warmup buckets. A burst of failed logins for one account spread over
// many sources, or a spike of errors on one site, stands out against that
// key's own history where no per-source threshold would.
//
// What it reports: a sighting names an address, so a firing anomaly
// reports the sources that contributed most to the anomalous bucket so
// far, and then each further source of that bucket as it shows up, up to
// ReportTop sources a bucket, each with its own count, at the rule's
// severity and confidence.
//
// Bounds: at most MaxKeys keys a rule (least recently active evicted,
// counted as the rule's evictions), at most anomalyContributors sources
// remembered a bucket (the rest are counted, not named). The baselines
// survive a restart through AnomalyState and RestoreAnomalies.

// AnomalyRule makes a rule learn a per-key baseline instead of counting
// to a threshold.
type AnomalyRule struct {
	// Key is the event field whose values each get a baseline: user, dst,
	// dst_port, path, agent, program, tag...
	Key string `yaml:"key"`
	// Bucket is the time bucket the events are counted in (default 1m).
	Bucket time.Duration `yaml:"bucket,omitempty"`
	// Alpha is the weight of the newest bucket in the moving mean and
	// variance, in (0, 1] (default 0.1).
	Alpha float64 `yaml:"alpha,omitempty"`
	// Deviation is how many standard deviations above the mean a bucket
	// must climb to fire (default 4). The deviation used is at least 1
	// event, so a perfectly regular key does not fire on one event more.
	Deviation float64 `yaml:"deviation,omitempty"`
	// MinCount is the fewest events a bucket must hold to fire, however
	// unusual (default 10).
	MinCount int `yaml:"min_count,omitempty"`
	// Warmup is the buckets a key must have been watched before it can
	// fire (default 30).
	Warmup int `yaml:"warmup,omitempty"`
	// MaxKeys bounds the keys tracked (default 10000).
	MaxKeys int `yaml:"max_keys,omitempty"`
	// ReportTop is how many of the bucket's sources a firing reports
	// (default 5, at most anomalyContributors).
	ReportTop int `yaml:"report_top,omitempty"`
}

// Defaults and bounds of AnomalyRule.
const (
	defaultAnomalyBucket    = time.Minute
	defaultAnomalyAlpha     = 0.1
	defaultAnomalyDeviation = 4
	defaultAnomalyMinCount  = 10
	defaultAnomalyWarmup    = 30
	defaultAnomalyMaxKeys   = 10000
	defaultAnomalyReportTop = 5
	// anomalyContributors is how many distinct sources a key's bucket
	// names; more are counted in others.
	anomalyContributors = 8
	// maxAnomalyGap bounds the empty buckets folded into a baseline one by
	// one when a key comes back after a silence; past it the baseline has
	// decayed to nothing anyway ((1-alpha)^n).
	maxAnomalyGap = 256
)

// compiledAnomaly is an AnomalyRule with its defaults applied.
type compiledAnomaly struct {
	key                            Field
	bucket                         int64 // ns
	alpha, deviation               float64
	minCount, warmup, maxKeys, top int
}

func compileAnomaly(a *AnomalyRule, bad func(field, format string, args ...any) error) (*compiledAnomaly, error) {
	c := &compiledAnomaly{bucket: int64(a.Bucket), alpha: a.Alpha, deviation: a.Deviation,
		minCount: a.MinCount, warmup: a.Warmup, maxKeys: a.MaxKeys, top: a.ReportTop}
	f, ok := fieldByName(a.Key)
	if !ok || f == FieldKind || f == FieldSrc {
		return nil, bad("anomaly.key", "%q: want a field other than kind and src (one of %s)", a.Key, fieldList())
	}
	c.key = f
	switch {
	case a.Bucket == 0:
		c.bucket = int64(defaultAnomalyBucket)
	case a.Bucket < time.Second || a.Bucket > 24*time.Hour:
		return nil, bad("anomaly.bucket", "%s, want 1s to 24h", a.Bucket)
	}
	switch {
	case a.Alpha == 0:
		c.alpha = defaultAnomalyAlpha
	case !(a.Alpha > 0 && a.Alpha <= 1):
		return nil, bad("anomaly.alpha", "%v, want a weight in (0, 1]", a.Alpha)
	}
	switch {
	case a.Deviation == 0:
		c.deviation = defaultAnomalyDeviation
	case !(a.Deviation > 0 && a.Deviation <= 100):
		return nil, bad("anomaly.deviation", "%v, want standard deviations in (0, 100]", a.Deviation)
	}
	switch {
	case a.MinCount == 0:
		c.minCount = defaultAnomalyMinCount
	case a.MinCount < 1 || a.MinCount > 1_000_000:
		return nil, bad("anomaly.min_count", "%d, want 1 to 1000000", a.MinCount)
	}
	switch {
	case a.Warmup == 0:
		c.warmup = defaultAnomalyWarmup
	case a.Warmup < 1 || a.Warmup > 100_000:
		return nil, bad("anomaly.warmup", "%d buckets, want 1 to 100000", a.Warmup)
	}
	switch {
	case a.MaxKeys == 0:
		c.maxKeys = defaultAnomalyMaxKeys
	case a.MaxKeys < 1 || a.MaxKeys > 1_000_000:
		return nil, bad("anomaly.max_keys", "%d, want 1 to 1000000", a.MaxKeys)
	}
	switch {
	case a.ReportTop == 0:
		c.top = defaultAnomalyReportTop
	case a.ReportTop < 1 || a.ReportTop > anomalyContributors:
		return nil, bad("anomaly.report_top", "%d, want 1 to %d", a.ReportTop, anomalyContributors)
	}
	return c, nil
}

// anomState is an anomaly rule's keys.
type anomState struct {
	keys map[uint64]*anomKey
	lru  anomKey // sentinel: lru.next is the most recently active
}

// anomKey is the baseline of one key and its bucket in progress.
type anomKey struct {
	h          uint64
	bucket     int64 // index of the bucket in progress (time / bucket)
	count      int   // events in it
	fired      bool  // the bucket in progress has fired
	reported   int   // sources of the bucket in progress reported
	mean, m2   float64
	seen       int // buckets folded into the baseline
	srcs       [anomalyContributors]anomSrc
	nsrcs      int
	others     int
	prev, next *anomKey
}

type anomSrc struct {
	addr        netip.Addr
	count       int
	first, last int64
	reported    bool
}

func newAnomState() *anomState {
	s := &anomState{keys: make(map[uint64]*anomKey)}
	s.lru.next, s.lru.prev = &s.lru, &s.lru
	return s
}

// anomalyHash hashes a key's value with a fixed function (FNV-1a), so
// that baselines saved by one process are found by the next.
func anomalyHash(ev *Event, f Field) uint64 {
	h := fnv.New64a()
	switch f.typ() {
	case typeNumber:
		var b [8]byte
		n := uint64(ev.num(f))
		for i := range b {
			b[i] = byte(n >> (8 * i))
		}
		h.Write(b[:])
	case typeAddr:
		b := ev.addr(f).As16()
		h.Write(b[:])
	default:
		h.Write([]byte(ev.str(f)))
	}
	return h.Sum64()
}

// fold adds a closed bucket of n events to the baseline (West's
// exponentially weighted mean and variance).
func (k *anomKey) fold(n float64, alpha float64) {
	if k.seen == 0 {
		k.mean, k.m2 = n, 0
	} else {
		d := n - k.mean
		inc := alpha * d
		k.mean += inc
		k.m2 = (1 - alpha) * (k.m2 + d*inc)
	}
	k.seen++
}

// advance closes the buckets before b: the one in progress with its
// count, the empty ones after it with zero.
func (k *anomKey) advance(b int64, alpha float64) {
	if b <= k.bucket {
		return
	}
	k.fold(float64(k.count), alpha)
	gap := b - k.bucket - 1
	for i := int64(0); i < min(gap, maxAnomalyGap); i++ {
		k.fold(0, alpha)
	}
	if gap > maxAnomalyGap {
		k.seen += int(min(gap-maxAnomalyGap, math.MaxInt32))
	}
	k.bucket, k.count, k.fired, k.reported, k.nsrcs, k.others = b, 0, false, 0, 0, 0
}

// limit is the count the bucket in progress must reach to fire.
func (k *anomKey) limit(a *compiledAnomaly) float64 {
	sd := math.Sqrt(max(k.m2, 0))
	return max(float64(a.minCount), k.mean+a.deviation*max(sd, 1))
}

// note counts src's event at t in the bucket's contributors and returns
// its entry (nil when the bucket names as many sources as it can).
func (k *anomKey) note(src netip.Addr, t int64) *anomSrc {
	for i := range k.srcs[:k.nsrcs] {
		if s := &k.srcs[i]; s.addr == src {
			s.count++
			s.last = t
			return s
		}
	}
	if k.nsrcs < len(k.srcs) {
		k.srcs[k.nsrcs] = anomSrc{addr: src, count: 1, first: t, last: t}
		k.nsrcs++
		return &k.srcs[k.nsrcs-1]
	}
	k.others++
	return nil
}

// recordAnomaly counts ev at t for the anomaly rule r and emits the
// sightings of a firing.
func (e *Engine) recordAnomaly(r *ruleState, ev *Event, t int64, emit func(intel.Sighting)) {
	a := r.anomaly
	h := anomalyHash(ev, a.key)
	b := t / a.bucket
	k := r.anom.keys[h]
	if k == nil {
		if len(r.anom.keys) >= a.maxKeys {
			old := r.anom.lru.prev
			unlinkAnom(old)
			delete(r.anom.keys, old.h)
			e.stats.Evicted++
			r.evicted++
		}
		k = &anomKey{h: h, bucket: b}
		r.anom.keys[h] = k
	} else {
		unlinkAnom(k)
		// A line stamped in an earlier bucket (clock steps, merged
		// files) counts in the bucket in progress.
		k.advance(b, a.alpha)
	}
	pushAnom(&r.anom.lru, k)
	k.count++
	src := k.note(ev.Src, t)
	if k.fired {
		// The bucket is anomalous: a source new to it is reported too.
		if src != nil && !src.reported && k.reported < a.top {
			e.reportAnomaly(r, k, src, emit)
		}
		return
	}
	if k.seen < a.warmup || float64(k.count) < k.limit(a) {
		return
	}
	k.fired = true
	order := make([]*anomSrc, k.nsrcs)
	for i := range order {
		order[i] = &k.srcs[i]
	}
	slices.SortStableFunc(order, func(x, y *anomSrc) int { return cmp.Compare(y.count, x.count) })
	for _, s := range order[:min(len(order), a.top)] {
		e.reportAnomaly(r, k, s, emit)
	}
}

// reportAnomaly emits the sighting of s, a source of k's anomalous
// bucket.
func (e *Engine) reportAnomaly(r *ruleState, k *anomKey, s *anomSrc, emit func(intel.Sighting)) {
	s.reported = true
	k.reported++
	e.stats.Fired++
	r.fired++
	first, last := s.first, s.last
	if now := e.now().UnixNano(); last > now {
		e.stats.Ahead++
		first, last = min(first, now), now
	}
	emit(intel.Sighting{
		Indicator:  intel.IndicatorFromAddr(s.addr),
		Detector:   r.Name,
		Technique:  r.Technique,
		Severity:   r.Severity,
		Confidence: r.Confidence,
		Count:      s.count,
		FirstSeen:  time.Unix(0, first).UTC(),
		LastSeen:   time.Unix(0, last).UTC(),
	})
}

func unlinkAnom(k *anomKey) {
	k.prev.next, k.next.prev = k.next, k.prev
	k.prev, k.next = nil, nil
}

func pushAnom(head, k *anomKey) {
	k.prev, k.next = head, head.next
	head.next.prev = k
	head.next = k
}

// anomalyFile is the saved form of an engine's baselines.
type anomalyFile struct {
	Version int               `json:"version"`
	Rules   []anomalyFileRule `json:"rules"`
}

type anomalyFileRule struct {
	Rule   string           `json:"rule"`
	Key    string           `json:"key"`
	Bucket time.Duration    `json:"bucket"`
	Keys   []anomalyFileKey `json:"keys"`
}

type anomalyFileKey struct {
	Hash   uint64  `json:"h"`
	Bucket int64   `json:"b"`
	Count  int     `json:"n"`
	Fired  bool    `json:"f,omitempty"`
	Mean   float64 `json:"mean"`
	M2     float64 `json:"m2"`
	Seen   int     `json:"seen"`
}

const anomalyFileVersion = 1

// ErrAnomalyState is wrapped by the errors of RestoreAnomalies.
var ErrAnomalyState = errors.New("invalid anomaly state")

// AnomalyState returns the baselines of the engine's anomaly rules, for
// RestoreAnomalies in the next process (nil when it has none). The
// contributors of the buckets in progress are not kept.
func (e *Engine) AnomalyState() ([]byte, error) {
	e.mu.Lock()
	var f anomalyFile
	for _, r := range e.rules {
		if r.anom == nil {
			continue
		}
		fr := anomalyFileRule{Rule: r.Name, Key: r.anomaly.key.String(), Bucket: time.Duration(r.anomaly.bucket)}
		// Least recently active first, so that a restore into a smaller
		// MaxKeys keeps the most recent.
		for k := r.anom.lru.prev; k != &r.anom.lru; k = k.prev {
			fr.Keys = append(fr.Keys, anomalyFileKey{Hash: k.h, Bucket: k.bucket, Count: k.count, Fired: k.fired, Mean: k.mean, M2: k.m2, Seen: k.seen})
		}
		f.Rules = append(f.Rules, fr)
	}
	e.mu.Unlock()
	if len(f.Rules) == 0 {
		return nil, nil
	}
	f.Version = anomalyFileVersion
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("anomaly state: %w", err)
	}
	return b, nil
}

// RestoreAnomalies loads baselines saved by AnomalyState into the
// engine's anomaly rules of the same name, key and bucket; the others
// (rules gone or changed since) are skipped and counted. Nothing is
// restored when the data is malformed: the error says where.
func (e *Engine) RestoreAnomalies(data []byte) (restored, skipped int, err error) {
	var f anomalyFile
	if err := json.Unmarshal(data, &f); err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrAnomalyState, err)
	}
	if f.Version != anomalyFileVersion {
		return 0, 0, fmt.Errorf("%w: version %d, want %d", ErrAnomalyState, f.Version, anomalyFileVersion)
	}
	for i, fr := range f.Rules {
		for j, k := range fr.Keys {
			finite := !math.IsNaN(k.Mean) && !math.IsInf(k.Mean, 0) && !math.IsNaN(k.M2) && !math.IsInf(k.M2, 0)
			if !finite || k.Mean < 0 || k.M2 < 0 || k.Seen < 0 || k.Count < 0 {
				return 0, 0, fmt.Errorf("%w: rules[%d] (%q) keys[%d]: mean %v, m2 %v, seen %d, count %d: want finite, non-negative values",
					ErrAnomalyState, i, fr.Rule, j, k.Mean, k.M2, k.Seen, k.Count)
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, fr := range f.Rules {
		var r *ruleState
		for _, x := range e.rules {
			if x.Name == fr.Rule && x.anom != nil && x.anomaly.key.String() == fr.Key && time.Duration(x.anomaly.bucket) == fr.Bucket {
				r = x
			}
		}
		if r == nil {
			skipped += len(fr.Keys)
			continue
		}
		for _, fk := range fr.Keys {
			if k := r.anom.keys[fk.Hash]; k != nil {
				unlinkAnom(k)
				delete(r.anom.keys, fk.Hash)
			}
			if len(r.anom.keys) >= r.anomaly.maxKeys {
				old := r.anom.lru.prev
				unlinkAnom(old)
				delete(r.anom.keys, old.h)
				skipped++
			}
			k := &anomKey{h: fk.Hash, bucket: fk.Bucket, count: fk.Count, fired: fk.Fired, mean: fk.Mean, m2: fk.M2, seen: fk.Seen}
			r.anom.keys[fk.Hash] = k
			pushAnom(&r.anom.lru, k)
			restored++
		}
	}
	return restored, skipped, nil
}
