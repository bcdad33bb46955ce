package admin

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestEventHubDropsSlowStreams: a stream that does not read is ended once
// its buffer is full, counted as slow_client, while a reading stream gets
// every event; the publisher never waits.
func TestEventHubDropsSlowStreams(t *testing.T) {
	h := newEventHub(prometheus.NewRegistry())
	slow, fast := h.subscribe(), h.subscribe()
	got := 0
	for range streamBuffer + 10 {
		h.publish(LiveEvent{Kind: EventSighting})
		select {
		case <-fast.ch:
			got++
		default:
			t.Fatal("the reading stream missed an event")
		}
	}
	select {
	case <-slow.gone:
	default:
		t.Fatal("the stream that never read was not ended")
	}
	if n := value(h.dropped.WithLabelValues(streamSlow)); n != 1 {
		t.Fatalf("slow_client counted %v, want 1", n)
	}
	if got != streamBuffer+10 {
		t.Fatalf("reading stream got %d events", got)
	}
	h.unsubscribe(slow) // idempotent after the hub ended it
	h.close()
	select {
	case <-fast.gone:
	default:
		t.Fatal("close left a stream open")
	}
	if h.subscribe() != nil {
		t.Fatal("subscribed after close")
	}
}

// TestEventHubBoundsStreams: at most maxStreams streams at once.
func TestEventHubBoundsStreams(t *testing.T) {
	h := newEventHub(nil)
	for range maxStreams {
		if h.subscribe() == nil {
			t.Fatal("refused a stream under the bound")
		}
	}
	if h.subscribe() != nil {
		t.Fatal("accepted a stream over the bound")
	}
	if n := value(h.dropped.WithLabelValues(streamTooMany)); n != 1 {
		t.Fatalf("too_many_streams counted %v", n)
	}
}

// writes is a ResponseWriter that hands every write to a channel.
type writes struct {
	hdr http.Header
	ch  chan string
}

func (w *writes) Header() http.Header         { return w.hdr }
func (w *writes) WriteHeader(int)             {}
func (w *writes) Flush()                      {}
func (w *writes) Write(b []byte) (int, error) { w.ch <- string(b); return len(b), nil }

// TestEventStreamHeartbeat: an idle stream gets a comment line every
// heartbeat, and ends when the server closes.
func TestEventStreamHeartbeat(t *testing.T) {
	s := newServer(Options{})
	s.heartbeat = time.Millisecond
	st := s.hub.subscribe()
	w := &writes{hdr: http.Header{}, ch: make(chan string)}
	var wg sync.WaitGroup
	wg.Go(func() { s.serveStream(context.Background(), w, st) })
	beats := 0
	for beats < 3 {
		if strings.HasPrefix(<-w.ch, ": heartbeat") {
			beats++
		}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-w.ch:
			case <-done:
				return
			}
		}
	}()
	s.hub.close()
	wg.Wait()
	close(done)
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

// TestEventStreamOutlivesReadTimeout: a stream stays open past the
// server's read timeout (net/http lifts the read deadline once the request
// is read; a deadline left on the connection would end the request's
// context): it keeps receiving heartbeats for five read timeouts.
func TestEventStreamOutlivesReadTimeout(t *testing.T) {
	s := newServer(Options{})
	s.heartbeat = 20 * time.Millisecond
	const readTimeout = 100 * time.Millisecond
	srv := &http.Server{ReadTimeout: readTimeout, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.hub.subscribe()
		defer s.hub.unsubscribe(st)
		s.serveStream(r.Context(), w, st)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(l) })
	defer func() {
		s.hub.close()
		srv.Close()
		wg.Wait()
	}()
	resp, err := http.Get("http://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	start := time.Now()
	beats := 0
	for time.Since(start) < 5*readTimeout {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended after %s and %d heartbeats (read timeout %s): %v", time.Since(start), beats, readTimeout, err)
		}
		if strings.HasPrefix(line, ": heartbeat") {
			beats++
		}
	}
}

// BenchmarkEventHubPublish: one event encoded and handed to 64 open
// streams, each drained by a reader of its own.
func BenchmarkEventHubPublish(b *testing.B) {
	h := newEventHub(nil)
	var wg sync.WaitGroup
	for range maxStreams {
		st := h.subscribe()
		wg.Go(func() {
			for {
				select {
				case <-st.ch:
				case <-st.gone:
					return
				}
			}
		})
	}
	e := LiveEvent{Kind: EventDetection, Node: "12D3KooWTestNode", DetectionID: "0123456789abcdef", Detector: "ssh-bruteforce", Count: 5}
	b.ReportAllocs()
	for b.Loop() {
		h.publish(e)
	}
	b.StopTimer()
	h.close()
	wg.Wait()
}
