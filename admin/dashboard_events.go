package admin

// The live event stream (GET /v1/events/stream): the node publishes its
// detections, the sightings it receives and its policies' changes to the
// server (PublishEvent), which fans each out to every open stream as a
// Server-Sent Event. Each stream has a bounded buffer; a stream that
// falls behind is ended and counted, never waited for: a slow browser
// cannot slow the node down.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
)

// Bounds of the event streams.
const (
	// streamBuffer is how many events one stream may have waiting.
	streamBuffer = 256
	// maxStreams bounds the streams open at once.
	maxStreams = 64
	// streamHeartbeat is how often an idle stream gets a comment line,
	// so that proxies and the browser keep it open.
	streamHeartbeat = 15 * time.Second
	// streamWriteTimeout bounds one write to a stream.
	streamWriteTimeout = 30 * time.Second
)

// Why a stream was ended or refused: reasons of
// meshward_admin_event_streams_dropped_total.
const (
	streamSlow     = "slow_client"      // its buffer was full
	streamTooMany  = "too_many_streams" // maxStreams were open (503)
	streamWriteErr = "write_error"      // writing to it failed
)

// Kinds of live events.
const (
	EventDetection       = "detection"         // a detector of this node fired (its sighting stored)
	EventSighting        = "sighting_received" // a signed sighting arrived from another node
	EventPolicyCommitted = "policy_committed"
	EventPolicyEnforced  = "policy_enforced"
	EventPolicyExpired   = "policy_expired"
)

// LiveEvent is one event of the stream.
type LiveEvent struct {
	Kind string    `json:"kind"`
	Time time.Time `json:"time"`
	// Node is the node reporting; Origin the node that signed the
	// sighting.
	Node   string `json:"node,omitempty"`
	Origin string `json:"origin,omitempty"`
	// DetectionID is set on a detection (DetectionID).
	DetectionID string          `json:"detection_id,omitempty"`
	Indicator   intel.Indicator `json:"indicator"`
	Detector    string          `json:"detector,omitempty"`
	Technique   string          `json:"technique,omitempty"`
	Severity    intel.Severity  `json:"severity,omitempty"`
	Count       int             `json:"count,omitempty"`
	PolicyID    string          `json:"policy_id,omitempty"`
	Action      intel.Action    `json:"action,omitempty"`
	Backend     string          `json:"backend,omitempty"`
}

// eventHub fans events out to the open streams.
type eventHub struct {
	mu     sync.Mutex
	subs   map[*stream]struct{}
	closed chan struct{}

	published prometheus.Counter
	dropped   *prometheus.CounterVec
	open      prometheus.GaugeFunc
}

// stream is one open event stream.
type stream struct {
	ch   chan []byte   // encoded events
	gone chan struct{} // closed when the hub ends the stream
}

func newEventHub(reg prometheus.Registerer) *eventHub {
	h := &eventHub{subs: make(map[*stream]struct{}), closed: make(chan struct{})}
	h.published = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "meshward", Subsystem: "admin", Name: "events_published_total",
		Help: "Live events published to the dashboard's event streams.",
	})
	h.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshward", Subsystem: "admin", Name: "event_streams_dropped_total",
		Help: "Event streams ended or refused, by reason (slow_client, too_many_streams, write_error).",
	}, []string{"reason"})
	h.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "meshward", Subsystem: "admin", Name: "event_streams",
		Help: "Event streams open.",
	}, func() float64 { h.mu.Lock(); defer h.mu.Unlock(); return float64(len(h.subs)) })
	for _, r := range []string{streamSlow, streamTooMany, streamWriteErr} {
		h.dropped.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(h.published, h.dropped, h.open)
	}
	return h
}

// subscribe opens a stream, or returns nil when maxStreams are open or the
// hub is closed.
func (h *eventHub) subscribe() *stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.closed:
		return nil
	default:
	}
	if len(h.subs) >= maxStreams {
		h.dropped.WithLabelValues(streamTooMany).Inc()
		return nil
	}
	st := &stream{ch: make(chan []byte, streamBuffer), gone: make(chan struct{})}
	h.subs[st] = struct{}{}
	return st
}

// unsubscribe closes st if the hub has not already.
func (h *eventHub) unsubscribe(st *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[st]; ok {
		delete(h.subs, st)
		close(st.gone)
	}
}

// publish hands e to every stream; a stream whose buffer is full is ended
// and counted. It never blocks.
func (h *eventHub) publish(e LiveEvent) {
	b, err := json.Marshal(e)
	if err != nil {
		return // a LiveEvent always encodes
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.published.Inc()
	for st := range h.subs {
		select {
		case st.ch <- b:
		default:
			delete(h.subs, st)
			close(st.gone)
			h.dropped.WithLabelValues(streamSlow).Inc()
		}
	}
}

// close ends every stream and refuses new ones.
func (h *eventHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.closed:
		return
	default:
	}
	close(h.closed)
	for st := range h.subs {
		delete(h.subs, st)
		close(st.gone)
	}
}

// PublishEvent sends e to the open event streams. It never blocks; a
// stream that cannot keep up is ended.
func (s *Server) PublishEvent(e LiveEvent) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC()
	s.hub.publish(e)
}

// getEventStream serves the live events as Server-Sent Events until the
// client goes, falls behind, or the server closes.
func getEventStream(s *Server, c *call) (any, error) {
	st := s.hub.subscribe()
	if st == nil {
		return nil, fmt.Errorf("%w: %d event streams are open already", ErrUnavailable, maxStreams)
	}
	return streamBody{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer s.hub.unsubscribe(st)
		s.serveStream(r.Context(), w, st)
	})}, nil
}

func (s *Server) serveStream(ctx context.Context, w http.ResponseWriter, st *stream) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			s.hub.dropped.WithLabelValues(streamWriteErr).Inc()
			return false
		}
		if err := rc.Flush(); err != nil {
			s.hub.dropped.WithLabelValues(streamWriteErr).Inc()
			return false
		}
		return true
	}
	if !write([]byte(": meshward events\nretry: 3000\n\n")) {
		return
	}
	hb := time.NewTicker(s.heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.gone:
			// Ended by the hub: fallen behind, or the server is closing.
			// What was buffered is still sent.
			for {
				select {
				case b := <-st.ch:
					if !write(sseEvent(b)) {
						return
					}
				default:
					write([]byte("event: end\ndata: {}\n\n"))
					return
				}
			}
		case b := <-st.ch:
			if !write(sseEvent(b)) {
				return
			}
		case <-hb.C:
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		}
	}
}

// sseEvent frames one encoded event (JSON, so one line).
func sseEvent(b []byte) []byte {
	out := make([]byte, 0, len(b)+16)
	out = append(out, "data: "...)
	out = append(out, b...)
	return append(out, "\n\n"...)
}
