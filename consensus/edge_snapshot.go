package consensus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/meshward/meshward/consensus/certify"
)

// The certified snapshot protocol: an edge that has no state, or has
// fallen behind the servers' recent entries, asks a voter for the
// manifest of its snapshot at its head, asks the other voters for theirs
// at the same index (voters at the same head produce the same bytes, so
// their signatures add up), then fetches the bytes from a signer and
// installs them (certify.Edge.Install checks a majority of the voters
// signed, and the bytes' hash).
//
// Wire (SnapshotProtocol), big endian: the request is 1 version (1),
// 1 kind (1: manifest, 2: state), 8 index (0 for a manifest: at the
// server's head); the answer is 1 status, 8 length n, then n bytes: the
// manifest (certify.Manifest's encoding, signed by the server) or the
// snapshot bytes.
//
// A server keeps the last snapshot it certified, bytes included, so that
// the edge's fetch of the state finds it; refusals are counted in
// meshward_transport_refused_total{protocol="/meshward/chain-snapshot/1.0.0"}.

// SnapshotProtocol is the certified snapshot protocol's ID.
const SnapshotProtocol = protocol.ID("/meshward/chain-snapshot/1.0.0")

const (
	snapRequestVersion = 1
	snapRequestSize    = 10
	snapKindManifest   = 1
	snapKindState      = 2

	snapStatusOK      = 0
	snapStatusMoved   = 1 // the server's head moved past the index asked for
	snapStatusRefused = 2 // the asker is not a member
	snapStatusUnknown = 3 // the server does not know its chain

	// snapshotTimeout bounds one catch-up from a snapshot.
	snapshotTimeout = 60 * time.Second
	// maxSnapshotFetch bounds the snapshot bytes an edge takes.
	maxSnapshotFetch = 1 << 30
)

// Reasons the snapshot protocol refuses a request.
const (
	RefusedSnapshotMalformed = "malformed"
)

// Errors of a snapshot fetch.
var (
	errSnapshotMoved   = errors.New("the server's head moved on")
	errSnapshotRefused = errors.New("the server refused the request")
	errSnapshotUnknown = errors.New("the server does not know its chain")
)

// snapshotCache is the last snapshot this node certified.
type snapshotCache struct {
	mu    sync.Mutex
	m     certify.Manifest
	state []byte
}

// certified returns this node's certified snapshot at index at (0: at
// its head), making one if the head is there and the cache is not.
func (c *Consensus) certified(at uint64) (certify.Manifest, []byte, byte) {
	sc := &c.snapCache
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if at != 0 && sc.m.Index == at {
		return sc.m, sc.state, snapStatusOK
	}
	head, err := c.ChainHead()
	if err != nil {
		return certify.Manifest{}, nil, snapStatusUnknown
	}
	if at != 0 && head.Index != at {
		return certify.Manifest{}, nil, snapStatusMoved
	}
	if sc.m.Index == head.Index && sc.m.Chain == head.Hash {
		return sc.m, sc.state, snapStatusOK
	}
	m, state, err := c.CertifiedSnapshot()
	if err != nil {
		return certify.Manifest{}, nil, snapStatusUnknown
	}
	if at != 0 && m.Index != at {
		return certify.Manifest{}, nil, snapStatusMoved
	}
	sc.m, sc.state = m, state
	return m, state, snapStatusOK
}

func (c *Consensus) handleSnapshot(s network.Stream) {
	done := make(chan struct{})
	if c.isClosed() || !c.group.Go(func(ctx context.Context) {
		defer close(done)
		c.serveSnapshot(ctx, s)
	}) {
		_ = s.Reset()
		return
	}
	<-done
}

func (c *Consensus) serveSnapshot(ctx context.Context, s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(snapshotTimeout))
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	from := s.Conn().RemotePeer()
	if !c.IsMember(from.String()) {
		c.refuseStream(SnapshotProtocol, RefusedNotMember, from, nil)
		_ = writeSnapAnswer(s, snapStatusRefused, nil)
		return
	}
	var req [snapRequestSize]byte
	if _, err := io.ReadFull(s, req[:]); err != nil || req[0] != snapRequestVersion || (req[1] != snapKindManifest && req[1] != snapKindState) {
		c.refuseStream(SnapshotProtocol, RefusedSnapshotMalformed, from, err)
		_ = s.Reset()
		return
	}
	at := binary.BigEndian.Uint64(req[2:])
	if req[1] == snapKindState && at == 0 {
		c.refuseStream(SnapshotProtocol, RefusedSnapshotMalformed, from, errors.New("state at index 0"))
		_ = s.Reset()
		return
	}
	m, state, status := c.certified(at)
	var body []byte
	if status == snapStatusOK {
		if req[1] == snapKindState {
			body = state
		} else {
			b, err := m.MarshalBinary()
			if err != nil {
				status = snapStatusUnknown
			}
			body = b
		}
	}
	_ = writeSnapAnswer(s, status, body)
}

func writeSnapAnswer(w io.Writer, status byte, body []byte) error {
	var hdr [9]byte
	hdr[0] = status
	binary.BigEndian.PutUint64(hdr[1:], uint64(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// fetchSnapshot asks p for its manifest (kind snapKindManifest) or its
// snapshot bytes (snapKindState) at index at, at most limit bytes.
func (c *Consensus) fetchSnapshot(ctx context.Context, p peer.ID, kind byte, at uint64, limit uint64) ([]byte, error) {
	s, err := c.h.NewStream(ctx, p, SnapshotProtocol)
	if err != nil {
		return nil, fmt.Errorf("snapshot from %s: %w", shortID(p.String()), err)
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	var req [snapRequestSize]byte
	req[0], req[1] = snapRequestVersion, kind
	binary.BigEndian.PutUint64(req[2:], at)
	if _, err := s.Write(req[:]); err != nil {
		return nil, fmt.Errorf("snapshot from %s: %w", shortID(p.String()), err)
	}
	_ = s.CloseWrite()
	var hdr [9]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		return nil, fmt.Errorf("snapshot from %s: answer: %w", shortID(p.String()), err)
	}
	switch hdr[0] {
	case snapStatusOK:
	case snapStatusMoved:
		return nil, fmt.Errorf("snapshot from %s at %d: %w", shortID(p.String()), at, errSnapshotMoved)
	case snapStatusRefused:
		return nil, fmt.Errorf("snapshot from %s: %w", shortID(p.String()), errSnapshotRefused)
	case snapStatusUnknown:
		return nil, fmt.Errorf("snapshot from %s: %w", shortID(p.String()), errSnapshotUnknown)
	default:
		return nil, fmt.Errorf("snapshot from %s: status %d", shortID(p.String()), hdr[0])
	}
	n := binary.BigEndian.Uint64(hdr[1:])
	if n > limit {
		return nil, fmt.Errorf("snapshot from %s: answer of %d bytes, limit %d", shortID(p.String()), n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(s, body); err != nil {
		return nil, fmt.Errorf("snapshot from %s: answer: %w", shortID(p.String()), err)
	}
	return body, nil
}

// fetchManifest asks p for its manifest at index at (0: its head).
func (c *Consensus) fetchManifest(ctx context.Context, p peer.ID, at uint64) (certify.Manifest, error) {
	b, err := c.fetchSnapshot(ctx, p, snapKindManifest, at, 64<<10)
	if err != nil {
		return certify.Manifest{}, err
	}
	var m certify.Manifest
	if err := m.UnmarshalBinary(b); err != nil {
		return certify.Manifest{}, fmt.Errorf("snapshot from %s: %w", shortID(p.String()), err)
	}
	return m, nil
}

// catchUpFromSnapshot collects a manifest signed by the voters it can
// reach at one index, then installs the snapshot bytes of a signer. Each
// signature is checked as it is collected, and only voters' count, so
// that one lying voter cannot spoil the collection; Install checks the
// majorities.
func (r *edgeRunner) catchUpFromSnapshot(ctx context.Context) error {
	c := r.c
	applied := r.e.Applied()
	servers := r.servers()
	if len(servers) == 0 {
		return errors.New("no voter to ask")
	}
	var base certify.Manifest
	var signers []peer.ID
	var errs []error
	// Each manifest is asked for under its own deadline, so that one
	// server that does not answer holds the catch-up up no longer than
	// one attempt.
	manifest := func(s peer.ID, at uint64) (certify.Manifest, error) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return c.fetchManifest(actx, s, at)
	}
	for _, s := range servers {
		m, err := manifest(s, 0)
		if err == nil && m.Index <= applied.Index {
			err = fmt.Errorf("snapshot from %s at %d: applied up to %d already", shortID(s.String()), m.Index, applied.Index)
		}
		var cand certify.Manifest
		if err == nil && !r.collect(&cand, &m, applied) {
			err = fmt.Errorf("snapshot from %s: no valid voter signature", shortID(s.String()))
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		base = cand
		signers = append(signers, s)
		break
	}
	if len(signers) == 0 {
		return fmt.Errorf("no manifest: %w", errors.Join(errs...))
	}
	// Ask the voters the manifest names too: an edge anchored on an
	// older voter set (it joined while standbys were being promoted)
	// knows too few of them for a majority of the set in force. Their
	// signatures count only as voters of that set (collect, Install).
	ask := slices.Clone(servers)
	for _, v := range base.Voters {
		if p, err := peer.Decode(v); err == nil && p != c.h.ID() && !slices.Contains(ask, p) {
			ask = append(ask, p)
		}
	}
	for _, s := range ask {
		if s == signers[0] {
			continue
		}
		m, err := manifest(s, base.Index)
		if err != nil || !base.SameBody(&m) || !r.collect(&base, &m, applied) {
			continue // moved on, or lying: the others may suffice
		}
		signers = append(signers, s)
	}
	// Short of a majority (the servers' heads differ while entries are
	// committed), fetch nothing and try again: Install would refuse it
	// and count an honest moment as a refusal.
	newCount, oldCount := 0, 0
	for _, sg := range base.Sigs {
		ct := certify.Cert{Signer: sg.Signer}
		id := ct.SignerID()
		if base.Voters.Contains(id) {
			newCount++
		}
		if applied.Voters.Contains(id) {
			oldCount++
		}
	}
	if newCount < base.Voters.Majority() || oldCount < applied.Voters.Majority() {
		return fmt.Errorf("snapshot at %d: signed by %d of its %d voters and %d of the %d trusted, short of a majority",
			base.Index, newCount, len(base.Voters), oldCount, len(applied.Voters))
	}
	var last error
	for _, s := range signers {
		state, err := c.fetchSnapshot(ctx, s, snapKindState, base.Index, min(base.Size, maxSnapshotFetch))
		if err != nil {
			last = err
			continue
		}
		if err := r.e.Install(base, state); err != nil {
			return fmt.Errorf("install the snapshot at %d of %d signers: %w", base.Index, len(base.Sigs), err)
		}
		c.log.Info("edge caught up from a certified snapshot", "index", base.Index, "signers", len(base.Sigs))
		return nil
	}
	return fmt.Errorf("fetch the snapshot at %d: %w", base.Index, last)
}

// collect adds m's valid signatures of voters (of m's set or the set the
// edge trusts) to base, m becoming base if base is empty; it reports
// whether any was added.
func (r *edgeRunner) collect(base, m *certify.Manifest, applied certify.Anchor) bool {
	if base.Index == 0 {
		*base = *m
		base.Sigs = nil
	}
	added := false
	for i, s := range m.Sigs {
		ct := certify.Cert{Signer: s.Signer}
		id := ct.SignerID()
		if id == "" || (!m.Voters.Contains(id) && !applied.Voters.Contains(id)) || !m.SigValid(i) {
			continue
		}
		dup := false
		for _, b := range base.Sigs {
			dup = dup || string(b.Signer) == string(s.Signer)
		}
		if !dup {
			base.Sigs = append(base.Sigs, s)
			added = true
		}
	}
	return added
}
