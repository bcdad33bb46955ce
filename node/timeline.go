package node

import (
	"sync"
	"time"
)

// Timeline is what one node knows of one indicator's journey through the
// mesh, by the node's own clock. A zero time means "not yet".
type Timeline struct {
	Indicator string `json:"indicator"`
	// Detected is when this node's own detector fired on it.
	Detected time.Time `json:"detected,omitzero"`
	// Received is when this node first held a sighting of it, its own or
	// another node's.
	Received time.Time `json:"received,omitzero"`
	// Committed is when this node first saw a mesh-wide block of it in
	// its copy of the consensus state.
	Committed time.Time `json:"committed,omitzero"`
	// Enforced is when a responder of this node first held a block of it,
	// from a mesh policy or a local decision.
	Enforced time.Time `json:"enforced,omitzero"`
}

// MeshEnforced is when the mesh-wide block took effect on this node: the
// later of Committed and Enforced (a local decision may have blocked the
// indicator before the mesh agreed). Zero until both have happened.
func (t Timeline) MeshEnforced() time.Time {
	if t.Committed.IsZero() || t.Enforced.IsZero() {
		return time.Time{}
	}
	if t.Enforced.After(t.Committed) {
		return t.Enforced
	}
	return t.Committed
}

// timelines keeps a bounded set of Timelines; past the cap the oldest
// entries go first.
type timelines struct {
	mu    sync.Mutex
	cap   int
	m     map[string]*Timeline
	order []string
}

func newTimelines(capacity int) *timelines {
	return &timelines{cap: capacity, m: make(map[string]*Timeline)}
}

// mark sets one field of the indicator's timeline if it is still unset.
func (ts *timelines) mark(key string, at time.Time, field func(*Timeline) *time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.m[key]
	if !ok {
		if len(ts.order) >= ts.cap {
			delete(ts.m, ts.order[0])
			ts.order = ts.order[1:]
		}
		t = &Timeline{Indicator: key}
		ts.m[key] = t
		ts.order = append(ts.order, key)
	}
	if f := field(t); f.IsZero() {
		*f = at
	}
}

func (ts *timelines) get(key string) (Timeline, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.m[key]
	if !ok {
		return Timeline{}, false
	}
	return *t, true
}

func detected(t *Timeline) *time.Time  { return &t.Detected }
func received(t *Timeline) *time.Time  { return &t.Received }
func committed(t *Timeline) *time.Time { return &t.Committed }
func enforced(t *Timeline) *time.Time  { return &t.Enforced }
