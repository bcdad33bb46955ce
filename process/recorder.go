package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/store"
)

// Store is what the Recorder keeps its records in: families of keyed
// values (store.Store implements it, store/process.go).
type Store interface {
	PutProcess(family, key string, v []byte) error
	// PutProcessMany is PutProcess of many keys, in few transactions.
	PutProcessMany(family string, keys []string, vals [][]byte) error
	// InsertProcess returns an error wrapping store.ErrExists, and stores
	// nothing, when the key is already stored.
	InsertProcess(family, key string, v []byte) error
	// GetProcess returns an error wrapping store.ErrNotFound when the
	// key is not stored.
	GetProcess(family, key string) ([]byte, error)
	ScanProcess(family string, fn func(key string, v []byte) error) error
	PruneProcess(family string, victim func(v []byte) bool) (int, error)
}

var _ Store = (*store.Store)(nil)

// The Recorder's families.
const (
	famRecord   = "record"   // indicator key -> entry
	famEvent    = "event"    // Event.Key() -> Stored
	famSpan     = "span"     // subject, out time -> Span
	famBreach   = "breach"   // Breach.ID() -> Breach as first counted
	famObserved = "observed" // indicator key -> observed
)

// Recorder keeps what one node knows of the process in its store, and
// its metrics. It is safe for concurrent use.
type Recorder struct {
	st   Store
	node string
	now  func() time.Time

	mu sync.Mutex // serialises read-modify-write of the records

	seconds  *prometheus.HistogramVec
	breaches *prometheus.CounterVec
	events   *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

// NewRecorder returns a recorder of node's process kept in st, on the
// clock now (time.Now when nil).
func NewRecorder(st Store, node string, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	r := &Recorder{st: st, node: node, now: now,
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "meshward", Subsystem: "process", Name: "seconds",
			Help:    "Time each stage of the security process took, per indicator, as this node saw it (share and enforce: until this node held and enforced it; compliance: a stretch out of compliance).",
			Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 16), // 50 ms to about 15 days
		}, []string{"stage"}),
		breaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshward", Subsystem: "process", Name: "breaches_total",
			Help: "Incidents late for a playbook expectation, by expectation (each counted once).",
		}, []string{"expectation"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshward", Subsystem: "process", Name: "events_total",
			Help: "Outside process events accepted (accepted) or accepted again (duplicate).",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshward", Subsystem: "process", Name: "events_rejected_total",
			Help: "Outside process events refused, by reason.",
		}, []string{"reason"}),
	}
	for _, s := range AllStages {
		r.seconds.WithLabelValues(string(s))
	}
	for _, reason := range RejectReasons {
		r.rejected.WithLabelValues(reason)
	}
	r.events.WithLabelValues("accepted")
	r.events.WithLabelValues("duplicate")
	return r
}

// Collectors are the recorder's metrics, for registration.
func (r *Recorder) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.seconds, r.breaches, r.events, r.rejected}
}

// SetExpectations readies the breach counter's labels.
func (r *Recorder) SetExpectations(exps []Expectation) {
	for _, e := range exps {
		r.breaches.WithLabelValues(e.Name)
	}
}

// Node is the ID of the node whose process this is.
func (r *Recorder) Node() string { return r.node }

// Update merges rec (this node's, of one indicator) into the stored
// record; every time keeps its earliest value.
func (r *Recorder) Update(rec Record) error { return r.UpdateMany([]Record{rec}) }

// UpdateMany is Update of many records, written together.
func (r *Recorder) UpdateMany(recs []Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	merged := make(map[string]*Record)
	var keys []string
	for _, rec := range recs {
		if rec.Indicator == "" || len(rec.Indicator) > store.MaxProcessKeyLen {
			return fmt.Errorf("process record: indicator key of %d bytes", len(rec.Indicator))
		}
		rec.Node = r.node
		cur, ok := merged[rec.Indicator]
		if !ok {
			stored, err := r.record(rec.Indicator)
			if err != nil {
				return err
			}
			if stored.Indicator == "" {
				stored = Record{Indicator: rec.Indicator, Node: r.node}
			}
			cur = &stored
			merged[rec.Indicator] = cur
			keys = append(keys, rec.Indicator)
		}
		cur.MergeInto(rec)
	}
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		b, err := json.Marshal(merged[k])
		if err != nil {
			return fmt.Errorf("encode process record %s: %w", k, err)
		}
		vals[i] = b
	}
	return r.st.PutProcessMany(famRecord, keys, vals)
}

func (r *Recorder) record(ind string) (Record, error) {
	var rec Record
	b, err := r.st.GetProcess(famRecord, ind)
	if errors.Is(err, store.ErrNotFound) {
		return rec, nil
	}
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode process record of %s: %w", ind, err)
	}
	return rec, nil
}

func (r *Recorder) putJSON(family, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode process %s %s: %w", family, key, err)
	}
	return r.st.PutProcess(family, key, b)
}

// scanJSON decodes every value of family into a T.
func scanJSON[T any](st Store, family string) ([]T, error) {
	var out []T
	err := st.ScanProcess(family, func(key string, v []byte) error {
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("decode process %s %q: %w", family, key, err)
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// Records returns this node's records, by indicator.
func (r *Recorder) Records() ([]Record, error) { return scanJSON[Record](r.st, famRecord) }

// Events returns the outside events accepted, by key.
func (r *Recorder) Events() ([]Stored, error) { return scanJSON[Stored](r.st, famEvent) }

// Spans returns the compliance spans recorded, by subject and start.
func (r *Recorder) Spans() ([]Span, error) { return scanJSON[Span](r.st, famSpan) }

// AddEvent parses, checks and stores an outside event's JSON body. The
// same event (source, external id, kind) posted again is a duplicate:
// it returns the stored one and added false; posted again with other
// content it is refused (ReasonConflict). Every refusal is counted under
// its reason.
func (r *Recorder) AddEvent(body []byte) (Stored, bool, error) {
	ev, err := ParseEvent(body, r.now())
	if err != nil {
		r.rejected.WithLabelValues(ReasonOf(err)).Inc()
		return Stored{}, false, err
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return Stored{}, false, fmt.Errorf("encode process event: %w", err)
	}
	err = r.st.InsertProcess(famEvent, ev.Key(), b)
	if errors.Is(err, store.ErrExists) {
		prev, perr := r.event(ev.Key())
		if perr != nil {
			return Stored{}, false, perr
		}
		if !sameEvent(prev.Event, ev.Event) {
			r.rejected.WithLabelValues(ReasonConflict).Inc()
			return Stored{}, false, reject(ReasonConflict, "external_id",
				"%s event %q of %s already accepted at %s with other content", ev.Kind, clip(ev.ExternalID), ev.Source,
				prev.Received.Format(time.RFC3339))
		}
		r.events.WithLabelValues("duplicate").Inc()
		return prev, false, nil
	}
	if err != nil {
		return Stored{}, false, err
	}
	r.events.WithLabelValues("accepted").Inc()
	return ev, true, nil
}

func (r *Recorder) event(key string) (Stored, error) {
	var s Stored
	b, err := r.st.GetProcess(famEvent, key)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode process event: %w", err)
	}
	return s, nil
}

func sameEvent(a, b Event) bool {
	return a.Source == b.Source && a.Kind == b.Kind && a.ExternalID == b.ExternalID &&
		a.Time.Equal(b.Time) && a.Text == b.Text && slices.Equal(a.Indicators, b.Indicators)
}

// MaxSubjectLen bounds a compliance transition's subject.
const MaxSubjectLen = 128

// Compliance records a transition: Out opens a span for its subject
// (unless one is open), back closes the open one and observes its length.
func (r *Recorder) Compliance(t Transition) error {
	if len(t.Subject) > MaxSubjectLen || t.At.IsZero() {
		return fmt.Errorf("compliance transition: subject of %d bytes (at most %d) at %v", len(t.Subject), MaxSubjectLen, t.At)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	openKey := "open\x00" + t.Subject
	b, err := r.st.GetProcess(famSpan, openKey)
	var open *Span
	switch {
	case err == nil:
		var sp Span
		if err := json.Unmarshal(b, &sp); err != nil {
			return fmt.Errorf("decode open compliance span: %w", err)
		}
		if !sp.Out.IsZero() { // a zero one stands for "back in compliance"
			open = &sp
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	if t.Out {
		if open != nil {
			return nil // already out since open.Out
		}
		return r.putJSON(famSpan, openKey, Span{Subject: t.Subject, Out: t.At.UTC()})
	}
	if open == nil {
		return nil // back without having been out: nothing to measure
	}
	open.Back = t.At.UTC()
	if err := r.putJSON(famSpan, "done\x00"+t.Subject+"\x00"+open.Out.Format(time.RFC3339Nano), open); err != nil {
		return err
	}
	if err := r.putJSON(famSpan, openKey, Span{Subject: t.Subject}); err != nil {
		return err
	}
	r.seconds.WithLabelValues(string(StageCompliance)).Observe(open.Duration(open.Back).Seconds())
	return nil
}

// Incidents merges this node's records (Expected 1) with the outside
// events linked to them.
func (r *Recorder) Incidents() ([]Incident, error) {
	recs, err := r.Records()
	if err != nil {
		return nil, err
	}
	evs, err := r.Events()
	if err != nil {
		return nil, err
	}
	return Link(Merge(recs, 1), evs), nil
}

// Link sets the incidents' TriagedOutside and ClosedOutside from the
// events linked to their indicators.
func Link(incidents []Incident, events []Stored) []Incident {
	idx := make(map[string]int, len(incidents))
	for i, inc := range incidents {
		idx[inc.Indicator] = i
	}
	for _, ev := range events {
		for _, ind := range ev.Linked {
			i, ok := idx[ind]
			if !ok {
				continue
			}
			if ev.Triages() {
				incidents[i].TriagedOutside = earliest(incidents[i].TriagedOutside, ev.Time)
			}
			if ev.Closes() {
				incidents[i].ClosedOutside = earliest(incidents[i].ClosedOutside, ev.Time)
			}
		}
	}
	return incidents
}

// ActiveSpans returns the compliance spans, open ones included, without
// the placeholders of subjects back in compliance.
func (r *Recorder) ActiveSpans() ([]Span, error) {
	all, err := r.Spans()
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(s Span) bool { return s.Out.IsZero() }), nil
}

// observed is which stages of an indicator were observed in the
// histogram, and when it was detected (for pruning).
type observed struct {
	Indicator string    `json:"indicator"`
	At        time.Time `json:"at"`
	Stages    []Stage   `json:"stages"`
}

// Refresh observes the stage durations that became known since the last
// Refresh in meshward_process_seconds (each stage of each indicator
// once), evaluates exps and counts the breaches not counted before. It
// returns the incidents and the breaches.
func (r *Recorder) Refresh(exps []Expectation) ([]Incident, []Breach, error) {
	incs, err := r.Incidents()
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen, err := scanJSON[observed](r.st, famObserved)
	if err != nil {
		return nil, nil, err
	}
	byInd := make(map[string]observed, len(seen))
	for _, o := range seen {
		byInd[o.Indicator] = o
	}
	for _, inc := range incs {
		ds := inc.Durations()
		if len(ds) == 0 {
			continue
		}
		obs := byInd[inc.Indicator]
		n := len(obs.Stages)
		for _, s := range Stages {
			if d, ok := ds[s]; ok && !slices.Contains(obs.Stages, s) {
				r.seconds.WithLabelValues(string(s)).Observe(d.Seconds())
				obs.Stages = append(obs.Stages, s)
			}
		}
		if len(obs.Stages) != n {
			obs.Indicator, obs.At = inc.Indicator, inc.Detected()
			if err := r.putJSON(famObserved, inc.Indicator, obs); err != nil {
				return nil, nil, err
			}
		}
	}
	bs := Evaluate(incs, exps, r.now())
	for _, b := range bs {
		v, err := json.Marshal(b)
		if err != nil {
			return nil, nil, fmt.Errorf("encode breach: %w", err)
		}
		switch err := r.st.InsertProcess(famBreach, b.ID(), v); {
		case err == nil:
			r.breaches.WithLabelValues(b.Expectation).Inc()
		case !errors.Is(err, store.ErrExists):
			return nil, nil, err
		}
	}
	return incs, bs, nil
}

// Prune forgets the records, events, spans and breaches older than
// cutoff (by detection, event time, return to compliance, due time).
func (r *Recorder) Prune(cutoff time.Time) (int, error) {
	old := func(t time.Time) bool { return !t.IsZero() && t.Before(cutoff) }
	total := 0
	type job struct {
		family string
		victim func([]byte) bool
	}
	for _, j := range []job{
		{famRecord, func(v []byte) bool {
			var rec Record
			return json.Unmarshal(v, &rec) == nil && old(earliest(rec.Detected, rec.Received))
		}},
		{famEvent, func(v []byte) bool { var s Stored; return json.Unmarshal(v, &s) == nil && old(s.Time) }},
		{famSpan, func(v []byte) bool { var s Span; return json.Unmarshal(v, &s) == nil && old(s.Back) }},
		{famBreach, func(v []byte) bool { var b Breach; return json.Unmarshal(v, &b) == nil && old(b.Due) }},
		{famObserved, func(v []byte) bool { var o observed; return json.Unmarshal(v, &o) == nil && old(o.At) }},
	} {
		n, err := r.st.PruneProcess(j.family, j.victim)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
