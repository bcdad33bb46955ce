// Package chainsync is the catch-up path of edges: an edge that misses
// entries (certify.Edge.NextGap) asks a server for them over a libp2p
// stream, and gets them with the server's certificate of its head. What
// it gets is checked by the edge like anything from the network: a
// server can withhold, never forge.
//
// Wire (protocol Protocol), big endian: the request is 1 version (1),
// 8 first index, 2 most entries; the answer is 1 status, 4 length n,
// then n bytes: a certify.Message (StatusOK) or nothing.
package chainsync

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/meshward/meshward/consensus/certify"
	"github.com/meshward/meshward/internal/routine"
)

// Protocol is the catch-up protocol's ID.
const Protocol = protocol.ID("/meshward/chain/1.0.0")

// Answer statuses.
const (
	StatusOK      = 0 // a message follows
	StatusTrimmed = 1 // the entries asked for are no longer kept: catch up from a certified snapshot
	StatusRefused = 2 // the asker may not ask
	StatusUnknown = 3 // the server does not know its chain
)

const (
	requestVersion = 1
	requestSize    = 11
	streamTimeout  = 10 * time.Second
)

// Refusal reasons the server counts.
const (
	ReasonNotAllowed = "not_allowed"
	ReasonMalformed  = "malformed"
)

// Server answers catch-up requests from a server's chain.
type Server struct {
	h     host.Host
	src   certify.Source
	allow func(peer.ID) bool
	group *routine.Group

	mu      sync.Mutex
	refused map[string]uint64
}

// NewServer serves src on h to the peers allow admits (roster members).
// ctx bounds the handlers; Close stops serving and waits for them.
func NewServer(ctx context.Context, h host.Host, src certify.Source, allow func(peer.ID) bool) (*Server, error) {
	if src == nil || allow == nil {
		return nil, errors.New("chainsync server: src and allow are required")
	}
	s := &Server{h: h, src: src, allow: allow, group: routine.New(ctx), refused: map[string]uint64{}}
	h.SetStreamHandler(Protocol, s.handle)
	return s, nil
}

// Close stops serving and waits for the handlers. Idempotent.
func (s *Server) Close() {
	s.h.RemoveStreamHandler(Protocol)
	s.group.Close()
}

// Refused returns the refusals so far, by reason.
func (s *Server) Refused() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.refused)
}

func (s *Server) refuse(reason string) {
	s.mu.Lock()
	s.refused[reason]++
	s.mu.Unlock()
}

func (s *Server) handle(st network.Stream) {
	done := make(chan struct{})
	if !s.group.Go(func(ctx context.Context) {
		defer close(done)
		s.serve(ctx, st)
	}) {
		_ = st.Reset()
		return
	}
	<-done
}

func (s *Server) serve(ctx context.Context, st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(streamTimeout))
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	if !s.allow(st.Conn().RemotePeer()) {
		s.refuse(ReasonNotAllowed)
		_ = writeAnswer(st, StatusRefused, nil)
		return
	}
	var req [requestSize]byte
	if _, err := io.ReadFull(st, req[:]); err != nil || req[0] != requestVersion {
		s.refuse(ReasonMalformed)
		_ = st.Reset()
		return
	}
	from := binary.BigEndian.Uint64(req[1:])
	max := int(binary.BigEndian.Uint16(req[9:]))
	m, status := s.answer(from, max)
	var body []byte
	if status == StatusOK {
		b, err := m.MarshalBinary()
		if err != nil {
			status = StatusUnknown
		}
		body = b
	}
	_ = writeAnswer(st, status, body)
}

// Holder is a source that holds other voters' certificates too (a
// server on the servers' topic): its answers carry them, so that one
// answer can bring an edge a majority's.
type Holder interface {
	// HeldCerts returns the voters' certificates held, checked, at or
	// below index upTo and on this server's chain.
	HeldCerts(upTo uint64) []certify.Cert
}

// answer is the message for a request: the entries from from on (at most
// max, up to the head, within the message bound), the server's
// certificate of its head when it is a voter, and the other voters'
// certificates it holds (a standby has only those).
func (s *Server) answer(from uint64, max int) (certify.Message, byte) {
	head, err := s.src.ChainHead()
	if err != nil {
		return certify.Message{}, StatusUnknown
	}
	var certs []certify.Cert
	own, err := s.src.CertifyHead()
	if err == nil {
		certs = append(certs, own)
	}
	if h, ok := s.src.(Holder); ok {
		for _, c := range h.HeldCerts(head.Index) {
			if len(certs) < certify.MaxMessageCerts && (err != nil || c.SignerID() != own.SignerID()) {
				certs = append(certs, c)
			}
		}
	}
	if len(certs) == 0 {
		return certify.Message{}, StatusUnknown
	}
	max = min(max, certify.MaxMessageEntries)
	es, ok := s.src.ChainEntries(from, max)
	if !ok {
		return certify.Message{}, StatusTrimmed
	}
	limit := certify.MaxMessageSize - 16
	for i := range certs {
		limit -= 2 + certify.CertSize(len(certs[i].Mesh))
	}
	size := 0
	for i, e := range es {
		n := 4 + 30 + len(e.Data)
		if e.Index > head.Index || size+n > limit {
			es = es[:i]
			break
		}
		size += n
	}
	return certify.Message{Entries: es, Certs: certs}, StatusOK
}

func writeAnswer(w io.Writer, status byte, body []byte) error {
	hdr := [5]byte{status}
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// Errors of Fetch the caller branches on.
var (
	ErrTrimmed = errors.New("the server no longer keeps those entries: catch up from a certified snapshot")
	ErrRefused = errors.New("the server refused the request")
	ErrUnknown = errors.New("the server does not know its chain")
)

// Fetch asks server p for the entries from index from on (at most max)
// and the certificates of its head it holds.
func Fetch(ctx context.Context, h host.Host, p peer.ID, from uint64, max int) (certify.Message, error) {
	st, err := h.NewStream(ctx, p, Protocol)
	if err != nil {
		return certify.Message{}, fmt.Errorf("chain fetch from %s: %w", p, err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	_ = st.SetDeadline(time.Now().Add(streamTimeout))
	var req [requestSize]byte
	req[0] = requestVersion
	binary.BigEndian.PutUint64(req[1:], from)
	binary.BigEndian.PutUint16(req[9:], uint16(min(max, certify.MaxMessageEntries)))
	if _, err := st.Write(req[:]); err != nil {
		return certify.Message{}, fmt.Errorf("chain fetch from %s: %w", p, err)
	}
	_ = st.CloseWrite()
	var hdr [5]byte
	if _, err := io.ReadFull(st, hdr[:]); err != nil {
		return certify.Message{}, fmt.Errorf("chain fetch from %s: answer: %w", p, err)
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	switch hdr[0] {
	case StatusOK:
	case StatusTrimmed:
		return certify.Message{}, fmt.Errorf("chain fetch from %s: %w", p, ErrTrimmed)
	case StatusRefused:
		return certify.Message{}, fmt.Errorf("chain fetch from %s: %w", p, ErrRefused)
	case StatusUnknown:
		return certify.Message{}, fmt.Errorf("chain fetch from %s: %w", p, ErrUnknown)
	default:
		return certify.Message{}, fmt.Errorf("chain fetch from %s: status %d", p, hdr[0])
	}
	if n > certify.MaxMessageSize {
		return certify.Message{}, fmt.Errorf("chain fetch from %s: answer of %d bytes, limit %d", p, n, certify.MaxMessageSize)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(st, body); err != nil {
		return certify.Message{}, fmt.Errorf("chain fetch from %s: answer: %w", p, err)
	}
	var m certify.Message
	if err := m.UnmarshalBinary(body); err != nil {
		return certify.Message{}, fmt.Errorf("chain fetch from %s: %w", p, err)
	}
	return m, nil
}
