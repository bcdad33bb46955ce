package alert

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Evaluate reads the metric families of g (the node's registry) once,
// checks every metric rule against them, then runs Tick; it returns the
// notifications of both. A series compares true from its first evaluation
// that finds it so; the rule fires for it once it has stayed true for the
// rule's `for`, and resolves at the first evaluation that finds it false
// or gone. An error of Gather is returned with what could be read still
// evaluated; a nil g evaluates nothing but Tick.
func (e *Engine) Evaluate(g prometheus.Gatherer) ([]Notification, error) {
	var fams []*dto.MetricFamily
	var gerr error
	if g != nil && len(e.byKind[KindMetric]) > 0 {
		// Before the lock: the registry may hold the engine's own collector.
		fams, gerr = g.Gather()
		if gerr != nil {
			gerr = fmt.Errorf("gather metrics: %w", gerr)
		}
	}
	byName := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	var out []Notification
	if g != nil {
		for _, r := range e.byKind[KindMetric] {
			out = e.evalMetric(out, r, byName[r.Metric.Name], now)
		}
	}
	return e.tick(out, now), gerr
}

// evalMetric evaluates r against its family f (nil when absent).
func (e *Engine) evalMetric(out []Notification, r *rule, f *dto.MetricFamily, now time.Time) []Notification {
	m := r.Metric
	holding := map[string]bool{}
	if f != nil {
		for _, s := range f.GetMetric() {
			labels, ok := seriesLabels(s, m.Labels)
			if !ok {
				continue
			}
			v, ok := seriesValue(f.GetType(), s)
			if !ok || !compare(v, m.Op, m.Value) {
				continue
			}
			key := bounded(m.Name + labels)
			holding[key] = true
			since, pending := r.pending[key]
			if !pending {
				if _, firing := r.byKey[key]; !firing {
					if e.members+e.pending >= e.cfg.MaxGroups {
						e.makeRoom(0, nil)
						if e.members+e.pending >= e.cfg.MaxGroups {
							e.dropped[DropPendingFull]++
							continue
						}
					}
					r.pending[key] = now
					e.pending++
					since = now
				}
			}
			if _, firing := r.byKey[key]; firing || now.Sub(since) >= m.For {
				if pending {
					delete(r.pending, key)
					e.pending--
				}
				detail := fmt.Sprintf("%s%s = %s (%s %s)", m.Name, labels, fmtFloat(v), m.Op, fmtFloat(m.Value))
				out = e.fire(out, r, Event{Kind: KindMetric, Key: key, Detail: detail, At: since}, now)
			}
		}
	}
	for key := range r.pending {
		if !holding[key] {
			delete(r.pending, key)
			e.pending--
		}
	}
	var gone []string
	for key := range r.byKey {
		if !holding[key] {
			gone = append(gone, key)
		}
	}
	slices.Sort(gone)
	for _, key := range gone {
		out = e.resolveMember(out, r, key, now)
	}
	return out
}

// seriesLabels renders s's labels as {a="x",b="y"} (sorted, as the
// registry keeps them) if s carries every label of want.
func seriesLabels(s *dto.Metric, want map[string]string) (string, bool) {
	found := 0
	var b strings.Builder
	b.WriteByte('{')
	for i, lp := range s.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return "", false
			}
			found++
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(lp.GetName())
		b.WriteString("=")
		b.WriteString(strconv.Quote(lp.GetValue()))
	}
	b.WriteByte('}')
	if found != len(want) {
		return "", false
	}
	if b.Len() == 2 {
		return "", true
	}
	return b.String(), true
}

// seriesValue is the value a condition compares: a counter's, gauge's or
// untyped value; a histogram's or summary's count of observations.
func seriesValue(t dto.MetricType, s *dto.Metric) (float64, bool) {
	switch t {
	case dto.MetricType_COUNTER:
		return s.GetCounter().GetValue(), s.Counter != nil
	case dto.MetricType_GAUGE:
		return s.GetGauge().GetValue(), s.Gauge != nil
	case dto.MetricType_UNTYPED:
		return s.GetUntyped().GetValue(), s.Untyped != nil
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return float64(s.GetHistogram().GetSampleCount()), s.Histogram != nil
	case dto.MetricType_SUMMARY:
		return float64(s.GetSummary().GetSampleCount()), s.Summary != nil
	}
	return 0, false
}

func compare(v float64, op string, x float64) bool {
	switch op {
	case ">":
		return v > x
	case ">=":
		return v >= x
	case "<":
		return v < x
	case "<=":
		return v <= x
	case "==":
		return v == x
	case "!=":
		return v != x
	}
	return false
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
