package gossip

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/routine"
)

// SyncProtocol is the anti-entropy stream protocol.
const SyncProtocol = protocol.ID("/meshward/sync/1")

// Anti-entropy defaults and bounds.
const (
	DefaultSyncInterval    = 30 * time.Second
	DefaultSyncMaxSession  = 1024 // envelopes one session carries
	DefaultSyncTimeout     = 30 * time.Second
	syncMaxRequest         = 1 << 20 // bytes of one summary
	syncMaxSpans           = 64      // spans per origin in a summary
	syncMaxRounds          = 64      // back-to-back sessions while a peer has more
	syncMaxConcurrentPulls = 4
	syncMaxConcurrentServe = 8
	// SyncConcurrency is how many envelopes of one pulled session are
	// admitted at once: verified in parallel, and stored in the same
	// commits, while the next ones are read.
	SyncConcurrency = 128
	// syncScanSlack is how many stored envelopes a session may examine
	// beyond those it sends: one past the end of each range scanned, and
	// any the store holds malformed.
	syncScanSlack = 1024
)

// Log is the part of the envelope store that anti-entropy reads. ScanEnvelopes
// calls fn, in sequence order, with every stored envelope of origin whose
// sequence number is above afterSeq; an error from fn stops the scan and is
// returned. HighWater lists every origin with an envelope stored.
type Log interface {
	HighWater() (map[string]uint64, error)
	ScanEnvelopes(origin string, afterSeq uint64, fn func(raw []byte) error) error
}

// SyncStats counts anti-entropy sessions.
type SyncStats struct {
	Pulls, PullsFailed   uint64 // sessions this node started
	Served, ServedFailed uint64 // sessions peers started
	Received, Sent       uint64 // envelopes that crossed, accepted or not
}

// syncRequest is the puller's summary: for each origin, the spans of
// sequence numbers it holds. The server sends every envelope it holds that
// lies in none of them, at most Max.
type syncRequest struct {
	Have map[string][]span `json:"have"`
	Max  int               `json:"max"`
}

var (
	errSessionFull = errors.New("session limit reached")
	errRangeEnd    = errors.New("end of range")
	errScanBudget  = errors.New("scan budget spent")
)

type syncer struct {
	g       *Gossip
	log     Log
	have    *holdings
	notify  *network.NotifyBundle
	pullSem chan struct{}
	rg      *routine.Group // pulls and the periodic loop; owned by Gossip

	pulls, pullsFailed, served, servedFailed, received, sent atomic.Uint64

	mu      sync.Mutex
	closed  bool
	pulling map[peer.ID]bool
	serving map[peer.ID]bool
	serves  sync.WaitGroup // serve runs on the host's stream goroutines
}

func newSyncer(g *Gossip, log Log) *syncer {
	return &syncer{
		g:       g,
		log:     log,
		have:    newHoldings(),
		pullSem: make(chan struct{}, syncMaxConcurrentPulls),
		pulling: make(map[peer.ID]bool),
		serving: make(map[peer.ID]bool),
	}
}

// start serves the protocol, pulls from every peer that connects and from
// a random peer every interval (jittered), on rg's goroutines.
func (s *syncer) start(rg *routine.Group) {
	s.rg = rg
	ctx := rg.Context()
	s.g.h.SetStreamHandler(SyncProtocol, func(st network.Stream) { s.serve(ctx, st) })
	s.notify = &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) { s.trigger(c.RemotePeer()) },
	}
	s.g.h.Network().Notify(s.notify)
	for _, p := range s.g.h.Network().Peers() {
		s.trigger(p)
	}
	rg.Go(func(ctx context.Context) {
		for sleep(ctx, jitter(s.g.opts.SyncInterval)) {
			var cands []peer.ID
			for _, p := range s.g.h.Network().Peers() {
				if ok, _ := s.g.h.Peerstore().SupportsProtocols(p, SyncProtocol); len(ok) > 0 {
					cands = append(cands, p)
				}
			}
			if len(cands) > 0 {
				s.trigger(cands[rand.N(len(cands))])
			}
		}
	})
}

// close stops serving and waits for sessions being served; the pulls end
// with the routine group, which must be closed first.
func (s *syncer) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.g.h.RemoveStreamHandler(SyncProtocol)
	if s.notify != nil {
		s.g.h.Network().StopNotify(s.notify)
	}
	s.serves.Wait()
}

// trigger starts a pull from p unless one is running.
func (s *syncer) trigger(p peer.ID) {
	if p == s.g.h.ID() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.pulling[p] {
		return
	}
	s.pulling[p] = true
	started := s.rg.Go(func(ctx context.Context) {
		defer func() {
			s.mu.Lock()
			delete(s.pulling, p)
			s.mu.Unlock()
		}()
		select {
		case s.pullSem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.pullSem }()
		for range syncMaxRounds {
			n, err := s.pull(ctx, p)
			if err != nil {
				s.pullsFailed.Add(1)
				s.g.opts.Logger.Debug("anti-entropy pull failed", "peer", p, "err", err)
				return
			}
			s.pulls.Add(1)
			if n < s.g.opts.SyncMaxSession {
				return
			}
		}
	})
	if !started {
		delete(s.pulling, p)
	}
}

// Sync runs one anti-entropy session pulling from p now, and returns how
// many envelopes p sent. It is for callers that know p has news (and for
// tests); sessions also run on their own.
func (g *Gossip) Sync(ctx context.Context, p peer.ID) (int, error) {
	if g.sync == nil {
		return 0, errors.New("anti-entropy disabled: Options.Log is nil")
	}
	if !g.enter() {
		return 0, ErrClosed
	}
	defer g.inflight.Done()
	return g.sync.pull(ctx, p)
}

// pull asks p for what this node lacks and hands each envelope to the
// Handler after the same checks as gossip, freshness excepted.
func (s *syncer) pull(ctx context.Context, p peer.ID) (int, error) {
	if err := s.have.build(s.log); err != nil {
		return 0, fmt.Errorf("read local log: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.g.opts.SyncTimeout)
	defer cancel()
	st, err := s.g.h.NewStream(ctx, p, SyncProtocol)
	if err != nil {
		return 0, fmt.Errorf("open stream: %w", err)
	}
	defer st.Close()
	deadline, _ := ctx.Deadline()
	if err := st.SetDeadline(deadline); err != nil {
		st.Reset()
		return 0, fmt.Errorf("set deadline: %w", err)
	}
	req, err := json.Marshal(syncRequest{Have: s.have.summary(syncMaxSpans), Max: s.g.opts.SyncMaxSession})
	if err != nil {
		st.Reset()
		return 0, fmt.Errorf("encode summary: %w", err)
	}
	if len(req) > syncMaxRequest {
		st.Reset()
		return 0, fmt.Errorf("summary of %d bytes exceeds %d", len(req), syncMaxRequest)
	}
	w := bufio.NewWriter(st)
	err = writeFrame(w, req)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		st.Reset()
		return 0, fmt.Errorf("send summary: %w", err)
	}
	// The server reads exactly one frame, then answers and closes both
	// directions. When it has little to send, its close can overtake our
	// CloseWrite, which then fails although the request was delivered: the
	// answer is still there to read, so that failure is not the session's.
	_ = st.CloseWrite()
	r := bufio.NewReader(st)
	// Up to SyncConcurrency envelopes are admitted at once; the session
	// ends (and the stream is closed) only after every one of them.
	slots := make(chan struct{}, SyncConcurrency)
	var admitting sync.WaitGroup
	defer admitting.Wait()
	n := 0
	for {
		raw, err := readFrame(r, intel.MaxEnvelopeSize)
		if errors.Is(err, errFrameTooBig) {
			s.g.dropped(s.g.syncSpec, ReasonOversized, p, "", err)
			st.Reset()
			return n, fmt.Errorf("envelope %d: %w", n+1, err)
		}
		if err != nil {
			st.Reset()
			return n, fmt.Errorf("read envelope %d: %w", n+1, err)
		}
		if len(raw) == 0 {
			return n, nil // end of session
		}
		if n++; n > s.g.opts.SyncMaxSession {
			st.Reset()
			return n, fmt.Errorf("peer sent more than the %d envelopes asked for", s.g.opts.SyncMaxSession)
		}
		s.received.Add(1)
		slots <- struct{}{} // freed by an admission, which always ends
		admitting.Go(func() {
			defer func() { <-slots }()
			s.g.admit(ctx, s.g.syncSpec, raw, p, "")
		})
	}
}

// serve answers one pull from a member: it reads the peer's summary and
// streams back what the peer lacks, at most the session limit, then an
// empty frame. A stranger's stream is reset unread.
func (s *syncer) serve(ctx context.Context, st network.Stream) {
	p := st.Conn().RemotePeer()
	if !s.g.member(p) {
		s.refuse(st, RefusedNotMember, nil)
		return
	}
	s.mu.Lock()
	if s.closed || s.serving[p] || len(s.serving) >= syncMaxConcurrentServe {
		reason := RefusedBusy
		if s.closed {
			reason = RefusedShuttingDown
		}
		s.mu.Unlock()
		s.refuse(st, reason, nil)
		return
	}
	s.serving[p] = true
	s.serves.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.serving, p)
		s.mu.Unlock()
		s.serves.Done()
	}()
	if err := s.serveStream(ctx, st); err != nil {
		if errors.Is(err, errBadSummary) {
			s.refuse(st, RefusedBadSummary, err)
			return
		}
		st.Reset()
		s.servedFailed.Add(1)
		s.g.opts.Logger.Debug("anti-entropy serve failed", "peer", p, "err", err)
		return
	}
	st.Close()
	s.served.Add(1)
}

// refuse resets st and counts the refusal.
func (s *syncer) refuse(st network.Stream, reason string, err error) {
	s.g.refused.Refuse(string(SyncProtocol), reason, st.Conn().RemotePeer(), err)
	st.Reset()
	s.servedFailed.Add(1)
}

var errBadSummary = errors.New("bad summary")

// serveStream sends what the summary says the peer lacks. What it may
// examine is bounded as well as what it may send: per origin it scans only
// the gaps between the spans the peer holds (at most syncMaxSpans+1
// ranges, each from its start, stopping one envelope past its end), below
// the origin's high-water mark, and the whole session examines at most
// the session limit plus syncScanSlack stored envelopes. A summary with
// more spans than a puller sends is refused.
func (s *syncer) serveStream(ctx context.Context, st network.Stream) error {
	if err := st.SetDeadline(time.Now().Add(s.g.opts.SyncTimeout)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	b, err := readFrame(bufio.NewReader(st), syncMaxRequest)
	if err != nil {
		return fmt.Errorf("read summary: %w", err)
	}
	var req syncRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return fmt.Errorf("%w: decode: %w", errBadSummary, err)
	}
	for _, have := range req.Have {
		if len(have) > syncMaxSpans {
			return fmt.Errorf("%w: %d spans for one origin, limit %d", errBadSummary, len(have), syncMaxSpans)
		}
	}
	limit := s.g.opts.SyncMaxSession
	if req.Max > 0 && req.Max < limit {
		limit = req.Max
	}
	hw, err := s.log.HighWater()
	if err != nil {
		return fmt.Errorf("read high-water marks: %w", err)
	}
	origins := make([]string, 0, len(hw))
	for o := range hw {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	w := bufio.NewWriter(st)
	n, examined, budget := 0, 0, limit+syncScanSlack
	send := func(hi uint64) func(raw []byte) error {
		return func(raw []byte) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if examined++; examined > budget {
				return errScanBudget
			}
			seq, ok := rawSeq(raw)
			if !ok {
				return nil
			}
			if seq > hi {
				return errRangeEnd
			}
			if n >= limit {
				return errSessionFull
			}
			if err := writeFrame(w, raw); err != nil {
				return err
			}
			n++
			s.sent.Add(1)
			return nil
		}
	}
scan:
	for _, origin := range origins {
		for _, gap := range gaps(normalize(req.Have[origin]), hw[origin]) {
			err := s.log.ScanEnvelopes(origin, gap.Lo-1, send(gap.Hi))
			switch {
			case err == nil, errors.Is(err, errRangeEnd):
			case errors.Is(err, errSessionFull):
				break scan
			case errors.Is(err, errScanBudget):
				s.g.opts.Logger.Debug("anti-entropy session ended: scan budget spent",
					"peer", st.Conn().RemotePeer(), "examined", examined-1, "sent", n)
				break scan
			default:
				return fmt.Errorf("send envelopes of %s: %w", origin, err)
			}
		}
	}
	if err := writeFrame(w, nil); err != nil {
		return err
	}
	return w.Flush()
}

var errFrameTooBig = errors.New("frame too big")

// writeFrame writes a uvarint length and b; an empty frame ends a session.
// It flushes only when the buffer fills, and for the empty frame.
func writeFrame(w *bufio.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	if _, err := w.Write(hdr[:binary.PutUvarint(hdr[:], uint64(len(b)))]); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	if len(b) == 0 {
		return w.Flush()
	}
	return nil
}

func readFrame(r *bufio.Reader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooBig, n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// SyncStats returns anti-entropy counters; zero when it is disabled.
func (g *Gossip) SyncStats() SyncStats {
	if g.sync == nil {
		return SyncStats{}
	}
	s := g.sync
	return SyncStats{
		Pulls: s.pulls.Load(), PullsFailed: s.pullsFailed.Load(),
		Served: s.served.Load(), ServedFailed: s.servedFailed.Load(),
		Received: s.received.Load(), Sent: s.sent.Load(),
	}
}

// SyncRejected returns the envelopes anti-entropy dropped, by reason.
func (g *Gossip) SyncRejected() map[string]uint64 { return g.syncSpec.m.snapshot() }

// SyncAccepted returns how many envelopes anti-entropy handed to the Handler.
func (g *Gossip) SyncAccepted() uint64 { return g.syncSpec.m.acceptedN.Load() }
