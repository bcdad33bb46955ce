// Package query asks every member of the mesh one question at once and
// merges the answers: who has seen an indicator, whether a policy is
// enforced everywhere, how each node is. It is a request/response
// protocol over libp2p streams (Protocol), spoken only between roster
// members (DESIGN rule 3): a stranger's stream is refused and counted.
//
// A question fans out to every member under one deadline; the merged
// result has one entry a member with its status: answered, timed_out (no
// answer within the deadline), unreachable (no stream could be opened),
// refused (the member would not answer: it does not count the asker as a
// member, or is busy) or error (the member failed to answer).
package query

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/meshward/meshward/internal/refusal"
)

// Protocol is the libp2p protocol of mesh-wide queries.
const Protocol protocol.ID = "/meshward/query/1"

// Bounds of the protocol.
const (
	// MaxRequestBytes bounds a request on the wire.
	MaxRequestBytes = 4 << 10
	// MaxResponseBytes bounds a response on the wire.
	MaxResponseBytes = 1 << 20
	// DefaultAnswerTimeout bounds the time a member spends answering.
	DefaultAnswerTimeout = 5 * time.Second
	// DefaultMaxConcurrent bounds the questions a member answers at once;
	// more are refused as busy.
	DefaultMaxConcurrent = 32
)

// Kinds of question.
const (
	// KindIndicator: what has this node seen of an indicator, and does it
	// enforce a block of it?
	KindIndicator = "indicator"
	// KindPolicy: does this node enforce a mesh-wide policy?
	KindPolicy = "policy"
	// KindHealth: how is this node?
	KindHealth = "health"
	// KindCompliance: does this node's kernel enforce what it should
	// (blocks, segmentation), and since when not?
	KindCompliance = "compliance"
)

// Request is one question.
type Request struct {
	Kind      string `json:"kind"`
	Indicator string `json:"indicator,omitempty"` // KindIndicator
	Policy    string `json:"policy,omitempty"`    // KindPolicy
}

// ErrInvalidRequest is wrapped by every request validation error.
var ErrInvalidRequest = errors.New("invalid query")

// Validate checks the request's shape; the answering side checks the
// values (an indicator's syntax) itself.
func (r Request) Validate() error {
	switch r.Kind {
	case KindIndicator:
		if r.Indicator == "" || len(r.Indicator) > 2048 {
			return fmt.Errorf("%w: indicator: want 1 to 2048 bytes, got %d", ErrInvalidRequest, len(r.Indicator))
		}
		if r.Policy != "" {
			return fmt.Errorf("%w: policy: not used by an indicator query", ErrInvalidRequest)
		}
	case KindPolicy:
		if r.Policy == "" || len(r.Policy) > 128 {
			return fmt.Errorf("%w: policy: want 1 to 128 bytes, got %d", ErrInvalidRequest, len(r.Policy))
		}
		if r.Indicator != "" {
			return fmt.Errorf("%w: indicator: not used by a policy query", ErrInvalidRequest)
		}
	case KindHealth, KindCompliance:
		if r.Indicator != "" || r.Policy != "" {
			return fmt.Errorf("%w: a %s query takes no indicator or policy", ErrInvalidRequest, r.Kind)
		}
	default:
		return fmt.Errorf("%w: kind %q (want %s, %s, %s or %s)", ErrInvalidRequest, r.Kind, KindIndicator, KindPolicy, KindHealth, KindCompliance)
	}
	return nil
}

// Status says what became of the question put to one member.
type Status string

// Statuses of a Result.
const (
	Answered    Status = "answered"
	TimedOut    Status = "timed_out"
	Unreachable Status = "unreachable"
	Refused     Status = "refused"
	Failed      Status = "error"
)

// Result is one member's part of a query.
type Result struct {
	Node   string          `json:"node"`
	Status Status          `json:"status"`
	Error  string          `json:"error,omitempty"`
	Answer json.RawMessage `json:"answer,omitempty"`
	// Ms is how long the member took to answer (or to fail).
	Ms float64 `json:"ms"`
}

// response is what a member writes back.
type response struct {
	Answer json.RawMessage `json:"answer,omitempty"`
	// Refused is the reason the member would not answer.
	Refused string `json:"refused,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Answerer answers a question from a member; the answer is encoded as
// JSON. An error wrapping ErrInvalidRequest is reported to the asker as
// such.
type Answerer func(ctx context.Context, from peer.ID, req Request) (any, error)

// Reasons a member refuses a question, the reason label of
// meshward_transport_refused_total{protocol="/meshward/query/1"}.
const (
	RefusedNotMember = "not_member"
	RefusedBusy      = "busy"
	RefusedMalformed = "malformed"
	RefusedOversized = "oversized"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Member reports whether p may ask (a roster member). Required.
	Member func(p peer.ID) bool
	// Answer answers. Required.
	Answer Answerer
	// Refused counts refusals; nil keeps a private counter (Refusals).
	Refused *refusal.Counter
	// AnswerTimeout bounds one answer (default DefaultAnswerTimeout).
	AnswerTimeout time.Duration
	// MaxConcurrent bounds the answers in progress (default
	// DefaultMaxConcurrent).
	MaxConcurrent int
	// Logger receives the refusals (debug) when Refused is nil.
	Logger *slog.Logger
}

// Server answers the questions of members on a host.
type Server struct {
	h    host.Host
	o    ServerOptions
	sem  chan struct{}
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// NewServer answers Protocol on h until Close.
func NewServer(h host.Host, o ServerOptions) (*Server, error) {
	if o.Member == nil || o.Answer == nil {
		return nil, errors.New("query server: Member and Answer are required")
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = DefaultAnswerTimeout
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	if o.Refused == nil {
		o.Refused = refusal.New(o.Logger)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{h: h, o: o, sem: make(chan struct{}, o.MaxConcurrent), ctx: ctx, stop: stop}
	h.SetStreamHandler(Protocol, s.handle)
	return s, nil
}

// Refusals is the server's refusal counter.
func (s *Server) Refusals() *refusal.Counter { return s.o.Refused }

// Close stops answering and waits for the answers in progress.
func (s *Server) Close() error {
	s.h.RemoveStreamHandler(Protocol)
	s.stop()
	s.wg.Wait()
	return nil
}

func (s *Server) handle(st network.Stream) {
	s.wg.Add(1)
	defer s.wg.Done()
	defer st.Close()
	from := st.Conn().RemotePeer()
	refuse := func(reason string, err error) {
		s.o.Refused.Refuse(string(Protocol), reason, from, err)
		_ = st.SetWriteDeadline(time.Now().Add(time.Second))
		_ = json.NewEncoder(st).Encode(response{Refused: reason})
	}
	if s.ctx.Err() != nil {
		_ = st.Reset()
		return
	}
	if !s.o.Member(from) {
		refuse(RefusedNotMember, nil)
		return
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		refuse(RefusedBusy, nil)
		return
	}
	_ = st.SetReadDeadline(time.Now().Add(s.o.AnswerTimeout))
	line, err := bufio.NewReaderSize(io.LimitReader(st, MaxRequestBytes+1), 512).ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull) || len(line) > MaxRequestBytes:
		refuse(RefusedOversized, fmt.Errorf("request over %d bytes", MaxRequestBytes))
		return
	case err != nil && !(errors.Is(err, io.EOF) && len(line) > 0):
		refuse(RefusedMalformed, err)
		return
	}
	var req Request
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		refuse(RefusedMalformed, err)
		return
	}
	if err := req.Validate(); err != nil {
		refuse(RefusedMalformed, err)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.o.AnswerTimeout)
	defer cancel()
	var resp response
	ans, err := s.o.Answer(ctx, from, req)
	if err == nil {
		resp.Answer, err = json.Marshal(ans)
	}
	if err != nil {
		resp = response{Error: err.Error()}
	}
	_ = st.SetWriteDeadline(time.Now().Add(s.o.AnswerTimeout))
	if err := json.NewEncoder(st).Encode(resp); err != nil {
		_ = st.Reset()
	}
}

// Ask puts req to every peer of peers at once and returns their results,
// one a peer, in peers' order, once every peer has answered or failed or
// timeout has passed (or ctx ended). The asking host answers for itself
// only if it is in peers and serves the protocol.
func Ask(ctx context.Context, h host.Host, peers []peer.ID, req Request, timeout time.Duration) ([]Result, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	body = append(body, '\n')
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]Result, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() { out[i] = askOne(ctx, h, p, body) })
	}
	wg.Wait()
	return out, nil
}

func askOne(ctx context.Context, h host.Host, p peer.ID, body []byte) Result {
	start := time.Now()
	r := Result{Node: p.String()}
	finish := func(s Status, err error) Result {
		r.Status, r.Ms = s, float64(time.Since(start).Microseconds())/1000
		if err != nil {
			r.Error = err.Error()
		}
		// The stream's deadline is the query's: either one ending first
		// means the member did not answer in time.
		if s != Answered && (ctx.Err() != nil || isTimeout(err)) {
			r.Status = TimedOut
			if r.Error == "" {
				r.Error = "no answer within the deadline"
			}
		}
		return r
	}
	st, err := h.NewStream(network.WithAllowLimitedConn(ctx, "query"), p, Protocol)
	if err != nil {
		return finish(Unreachable, err)
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(d)
	}
	// A deadline on the stream ends a blocked read when ctx does; a
	// cancellation without a deadline resets the stream.
	stopWatch := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stopWatch()
	if _, err := st.Write(body); err != nil {
		return finish(Failed, fmt.Errorf("send: %w", err))
	}
	_ = st.CloseWrite()
	var resp response
	dec := json.NewDecoder(io.LimitReader(st, MaxResponseBytes))
	if err := dec.Decode(&resp); err != nil {
		return finish(Failed, fmt.Errorf("read answer: %w", err))
	}
	switch {
	case resp.Refused != "":
		return finish(Refused, errors.New(resp.Refused))
	case resp.Error != "":
		return finish(Failed, errors.New(resp.Error))
	}
	r.Answer = resp.Answer
	return finish(Answered, nil)
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// Summary counts the results by status.
func Summary(rs []Result) map[Status]int {
	out := make(map[Status]int)
	for _, r := range rs {
		out[r.Status]++
	}
	return out
}
