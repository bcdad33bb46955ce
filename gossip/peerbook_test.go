package gossip

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
)

// connectedBook returns a host a connected to a host b, and a's book in
// dir (not started).
func connectedBook(t *testing.T) (dir string, a, b host.Host, book *PeerBook) {
	t.Helper()
	dir = t.TempDir()
	a, _ = newTestHost(t)
	b, _ = newTestHost(t)
	connect(t, a, b)
	book, err := NewPeerBook(a, dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return dir, a, b, book
}

func TestPeerBookRemembersPeers(t *testing.T) {
	dir, _, b, book := connectedBook(t)
	if ais, err := book.Load(); err != nil || len(ais) != 0 {
		t.Fatalf("empty book: %v, %v", ais, err)
	}
	book.Start(context.Background())
	if err := book.Close(); err != nil { // saves
		t.Fatal(err)
	}
	if err := book.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	ais, err := book.Load()
	if err != nil || len(ais) != 1 || ais[0].ID != b.ID() || len(ais[0].Addrs) == 0 {
		t.Fatalf("book holds %v, %v; want %s", ais, err, b.ID())
	}

	// A restarted node (a fresh host) with the same directory finds b.
	c, _ := newTestHost(t)
	book2, err := NewPeerBook(c, dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	book2.Start(context.Background())
	t.Cleanup(func() { book2.Close() })
	waitFor(t, 10*time.Second, "the restarted node to reach the remembered peer", func() bool { return connected(c, b) })
}

// A save that would write the same book writes nothing; a new peer is
// written.
func TestPeerBookSavesOnlyChanges(t *testing.T) {
	dir, a, _, book := connectedBook(t)
	stat := func() os.FileInfo {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dir, PeerBookFile))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if err := book.Save(); err != nil {
		t.Fatal(err)
	}
	first := stat()
	if err := book.Save(); err != nil {
		t.Fatal(err)
	}
	// Every write is a new file renamed over the book.
	if !os.SameFile(first, stat()) {
		t.Fatal("an unchanged book was written again")
	}
	c, _ := newTestHost(t)
	connect(t, a, c)
	if err := book.Save(); err != nil {
		t.Fatal(err)
	}
	if os.SameFile(first, stat()) {
		t.Fatal("a new peer was not written")
	}
	ais, err := book.Load()
	if err != nil || len(ais) != 2 || ais[0].ID >= ais[1].ID {
		t.Fatalf("book holds %v, %v; want b and c in the order of their IDs", ais, err)
	}
}
