package nft_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshward/meshward/internal/testenv"
)

// netNS is a network namespace made for one test.
type netNS struct {
	name string
	fd   int
}

func run(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func uniq() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newNS creates an empty namespace with lo up, removed when t ends. Where
// namespaces cannot be created it skips t, or fails it when privileged
// tests are required (testenv).
func newNS(t testing.TB) *netNS {
	t.Helper()
	name := "mwt-" + uniq()
	return &netNS{name: name, fd: testenv.NetNS(t, name)}
}

// pair is two namespaces joined by a veth pair, with private addresses.
type pair struct {
	a, b   *netNS
	a4, b4 string // 10.x addresses
	a6, b6 string // fd00:: addresses
}

func newPair(t testing.TB) *pair {
	t.Helper()
	a, b := newNS(t), newNS(t)
	id := uniq()
	va, vb := "mwa"+id, "mwb"+id
	run(t, "ip", "link", "add", va, "netns", a.name, "type", "veth", "peer", "name", vb, "netns", b.name)
	p := &pair{a: a, b: b, a4: "10.77.0.1", b4: "10.77.0.2", a6: "fd00:77::1", b6: "fd00:77::2"}
	run(t, "ip", "-n", a.name, "addr", "add", p.a4+"/24", "dev", va)
	run(t, "ip", "-n", b.name, "addr", "add", p.b4+"/24", "dev", vb)
	run(t, "ip", "-n", a.name, "addr", "add", p.a6+"/64", "dev", va, "nodad")
	run(t, "ip", "-n", b.name, "addr", "add", p.b6+"/64", "dev", vb, "nodad")
	run(t, "ip", "-n", a.name, "link", "set", va, "up")
	run(t, "ip", "-n", b.name, "link", "set", vb, "up")
	return p
}

// inNS runs fn on a thread moved into ns. The thread is discarded
// afterwards (the goroutine exits locked), so no other goroutine ever
// runs in ns. Sockets created by fn stay in ns.
func inNS(ns *netNS, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// listen starts a TCP listener in ns on addr that accepts and closes
// connections until t ends; it returns the listener's address.
func listen(t testing.TB, ns *netNS, addr string) string {
	t.Helper()
	var ln net.Listener
	err := inNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(addr, "0"))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns.name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// dial connects from ns to addr with a short timeout.
func dial(ns *netNS, addr string) error {
	return inNS(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// waitDial polls until a connection from ns to addr succeeds; the
// deadline only bounds a failure.
func waitDial(t testing.TB, ns *netNS, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := dial(ns, addr)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connecting from %s to %s: %v", ns.name, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
