package store

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// Errors of EncryptedSnapshotStore's Open.
var (
	// ErrSnapshotNotEncrypted: a snapshot written without encryption
	// (before a key was configured, or by another store).
	ErrSnapshotNotEncrypted = errors.New("snapshot is not encrypted (written before a key was configured; run `meshward store rekey` with the node stopped)")
	// ErrSnapshotWrongKey: a snapshot encrypted with another key.
	ErrSnapshotWrongKey = errors.New("snapshot is encrypted with another key")
	// ErrSnapshotCorrupt: authentication failed: the snapshot was
	// altered, truncated or reordered.
	ErrSnapshotCorrupt = errors.New("snapshot failed authentication: altered or truncated")
)

// Encrypted snapshot format. A header, authenticated as the additional
// data of every chunk:
//
//	magic "MWSNAPE" 0x01 | key id (8) | salt (32) | nonce prefix (7)
//
// then the state in chunks of snapChunk bytes (the last one shorter,
// possibly empty), each sealed with AES-256-GCM under a key derived from
// the configured key and the snapshot's random salt (HKDF-SHA256), with
// the nonce nonce prefix | chunk counter (4, big endian) | last flag (1).
// The flag makes the last chunk distinct, so a stream cut at a chunk
// boundary fails authentication like one cut inside a chunk; the counter
// makes reordered chunks fail. The key id (derived from the key, not
// revealing it) tells a wrong key from a corrupt file.
const (
	snapMagic     = "MWSNAPE\x01"
	snapKeyIDLen  = 8
	snapSaltLen   = 32
	snapPrefixLen = 7
	snapHeaderLen = len(snapMagic) + snapKeyIDLen + snapSaltLen + snapPrefixLen
	snapChunk     = 64 << 10
	snapTag       = 16
	snapInfo      = "meshward raft snapshot v1"
	snapKeyIDInfo = "meshward raft snapshot key id v1"
)

// EncryptedSnapshotStore wraps inner so that every snapshot it writes is
// encrypted and authenticated with key (KeySize bytes) and every one it
// opens is authenticated and decrypted. The Size in the metadata it
// returns is the plaintext size, as raft expects when it sends a
// snapshot to a follower. What inner keeps beside the state (raft's
// meta.json: index, term, the Raft configuration of node IDs) is not
// encrypted.
func EncryptedSnapshotStore(inner raft.SnapshotStore, key []byte) (raft.SnapshotStore, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("snapshot store: encryption key is %d bytes, want %d (AES-256)", len(key), KeySize)
	}
	return &encSnapStore{inner: inner, key: bytes.Clone(key), keyID: snapKeyID(key)}, nil
}

type encSnapStore struct {
	inner raft.SnapshotStore
	key   []byte
	keyID []byte
}

var _ raft.SnapshotStore = (*encSnapStore)(nil)

func snapKeyID(key []byte) []byte {
	id, err := hkdf.Key(sha256.New, key, nil, snapKeyIDInfo, snapKeyIDLen)
	if err != nil {
		panic(err) // only for lengths HKDF cannot produce
	}
	return id
}

func snapAEAD(key, salt []byte) cipher.AEAD {
	sub, err := hkdf.Key(sha256.New, key, salt, snapInfo, KeySize)
	if err != nil {
		panic(err)
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		panic(err) // KeySize is a valid AES key size
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

func (s *encSnapStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration, configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.inner.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	w, err := newSnapWriter(sink, s.key, s.keyID)
	if err != nil {
		_ = sink.Cancel()
		return nil, err
	}
	return &encSnapSink{SnapshotSink: sink, w: w}, nil
}

func (s *encSnapStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.inner.List()
	if err != nil {
		return nil, err
	}
	out := make([]*raft.SnapshotMeta, 0, len(metas))
	for _, m := range metas {
		c := *m
		if n, ok := snapPlainSize(m.Size); ok {
			c.Size = n
		}
		out = append(out, &c)
	}
	return out, nil
}

func (s *encSnapStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.inner.Open(id)
	if err != nil {
		return nil, nil, err
	}
	r, err := newSnapReader(rc, s.key, s.keyID)
	if err != nil {
		rc.Close()
		return nil, nil, fmt.Errorf("open snapshot %s: %w", id, err)
	}
	n, ok := snapPlainSize(meta.Size)
	if !ok {
		rc.Close()
		return nil, nil, fmt.Errorf("open snapshot %s: size %d: %w", id, meta.Size, ErrSnapshotCorrupt)
	}
	c := *meta
	c.Size = n
	return &c, &snapReadCloser{snapReader: r, c: rc}, nil
}

// snapPlainSize is the plaintext size of an encrypted snapshot of n bytes.
func snapPlainSize(n int64) (int64, bool) {
	body := n - int64(snapHeaderLen)
	if body < snapTag {
		return 0, false
	}
	chunks := (body + snapChunk + snapTag - 1) / (snapChunk + snapTag)
	plain := body - chunks*snapTag
	if plain < 0 || (chunks > 1 && body-(chunks-1)*(snapChunk+snapTag) < snapTag) {
		return 0, false
	}
	return plain, true
}

// encSnapSink encrypts what raft writes into the inner sink.
type encSnapSink struct {
	raft.SnapshotSink
	w *snapWriter
}

func (s *encSnapSink) Write(p []byte) (int, error) { return s.w.Write(p) }

// Close seals the last chunk and closes the inner sink; on failure it
// cancels it, so that no unauthenticated snapshot is kept.
func (s *encSnapSink) Close() error {
	if err := s.w.Close(); err != nil {
		return errors.Join(err, s.SnapshotSink.Cancel())
	}
	return s.SnapshotSink.Close()
}

// snapWriter encrypts a stream into w.
type snapWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	header []byte
	nonce  []byte
	ctr    uint32
	buf    []byte
	out    []byte
	closed bool
	err    error
}

func newSnapWriter(w io.Writer, key, keyID []byte) (*snapWriter, error) {
	header := make([]byte, 0, snapHeaderLen)
	header = append(header, snapMagic...)
	header = append(header, keyID...)
	salt := make([]byte, snapSaltLen+snapPrefixLen)
	rand.Read(salt)
	header = append(header, salt...)
	if _, err := w.Write(header); err != nil {
		return nil, fmt.Errorf("write snapshot header: %w", err)
	}
	nonce := make([]byte, 12)
	copy(nonce, header[snapHeaderLen-snapPrefixLen:])
	return &snapWriter{
		w:      w,
		aead:   snapAEAD(key, header[len(snapMagic)+snapKeyIDLen:][:snapSaltLen]),
		header: header,
		nonce:  nonce,
		buf:    make([]byte, 0, snapChunk),
		out:    make([]byte, 0, snapChunk+snapTag),
	}, nil
}

func (w *snapWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("write to a closed snapshot")
	}
	n := 0
	for len(p) > 0 {
		// A full chunk is sealed only once more data follows: the last
		// chunk is sealed by Close, flagged as last.
		if len(w.buf) == snapChunk {
			if err := w.seal(false); err != nil {
				return n, err
			}
		}
		k := copy(w.buf[len(w.buf):snapChunk], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

func (w *snapWriter) seal(last bool) error {
	if w.ctr == ^uint32(0) {
		w.err = errors.New("snapshot too large to encrypt")
		return w.err
	}
	binary.BigEndian.PutUint32(w.nonce[snapPrefixLen:], w.ctr)
	w.nonce[11] = 0
	if last {
		w.nonce[11] = 1
	}
	w.out = w.aead.Seal(w.out[:0], w.nonce, w.buf, w.header)
	if _, err := w.w.Write(w.out); err != nil {
		w.err = fmt.Errorf("write snapshot: %w", err)
		return w.err
	}
	w.ctr++
	w.buf = w.buf[:0]
	return nil
}

// Close seals the last chunk. It does not close the underlying writer.
func (w *snapWriter) Close() error {
	if w.err != nil || w.closed {
		return w.err
	}
	w.closed = true
	return w.seal(true)
}

// snapReader authenticates and decrypts a stream written by snapWriter.
type snapReader struct {
	r      *bufio.Reader
	aead   cipher.AEAD
	header []byte
	nonce  []byte
	ctr    uint32
	in     []byte
	plain  []byte // decrypted, not yet read
	done   bool   // the last chunk was read
	err    error
}

func newSnapReader(r io.Reader, key, keyID []byte) (*snapReader, error) {
	br := bufio.NewReaderSize(r, snapChunk+snapTag)
	header := make([]byte, snapHeaderLen)
	n, err := io.ReadFull(br, header)
	if n < len(snapMagic) || !bytes.Equal(header[:len(snapMagic)], []byte(snapMagic)) {
		if err != nil && n == 0 {
			return nil, fmt.Errorf("read snapshot header: %w", err)
		}
		return nil, ErrSnapshotNotEncrypted
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot header: %w", ErrSnapshotCorrupt)
	}
	if !bytes.Equal(header[len(snapMagic):][:snapKeyIDLen], keyID) {
		return nil, ErrSnapshotWrongKey
	}
	nonce := make([]byte, 12)
	copy(nonce, header[snapHeaderLen-snapPrefixLen:])
	return &snapReader{
		r:      br,
		aead:   snapAEAD(key, header[len(snapMagic)+snapKeyIDLen:][:snapSaltLen]),
		header: header,
		nonce:  nonce,
		in:     make([]byte, snapChunk+snapTag),
	}, nil
}

func (r *snapReader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.err = r.next()
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

// next reads, authenticates and decrypts one chunk.
func (r *snapReader) next() error {
	n, err := io.ReadFull(r.r, r.in)
	last := false
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		last = true
	case err != nil:
		return fmt.Errorf("read snapshot: %w", err)
	default:
		if _, perr := r.r.Peek(1); perr == io.EOF {
			last = true
		} else if perr != nil {
			return fmt.Errorf("read snapshot: %w", perr)
		}
	}
	if n < snapTag {
		return ErrSnapshotCorrupt // truncated
	}
	binary.BigEndian.PutUint32(r.nonce[snapPrefixLen:], r.ctr)
	r.nonce[11] = 0
	if last {
		r.nonce[11] = 1
	}
	plain, err := r.aead.Open(r.in[:0], r.nonce, r.in[:n], r.header)
	if err != nil {
		return ErrSnapshotCorrupt
	}
	r.ctr++
	r.plain = plain
	r.done = last
	return nil
}

type snapReadCloser struct {
	*snapReader
	c io.Closer
}

func (r *snapReadCloser) Close() error { return r.c.Close() }
