package admin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
)

func TestSocketAndTokenFileModes(t *testing.T) {
	env := admintest.Start(t, admintest.NewNode(nodeID), admin.Options{})
	fi, err := os.Lstat(env.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	fi, err = os.Stat(env.Server.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode())
	}
	// No temporary directory or file is left beside them.
	ents, _ := os.ReadDir(filepath.Dir(env.Socket))
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("data dir holds %v, want the socket and the token file", names)
	}
}

func TestSocketLifecycle(t *testing.T) {
	st := admintest.OpenStore(t)
	node := admintest.NewNode(nodeID)
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")

	// A stale socket, left by a process that died, is replaced.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	srv, err := admin.Start(context.Background(), admin.Options{Node: node, Store: st, SocketPath: sock})
	if err != nil {
		t.Fatalf("start over a stale socket: %v", err)
	}
	// A live one is not.
	_, err = admin.Start(context.Background(), admin.Options{Node: node, Store: st, SocketPath: sock})
	if !errors.Is(err, admin.ErrSocketInUse) {
		t.Fatalf("start over a live socket: %v, want ErrSocketInUse", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}
	// A regular file is never removed.
	if err := os.WriteFile(sock, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Start(context.Background(), admin.Options{Node: node, Store: st, SocketPath: sock}); err == nil {
		t.Fatal("start over a regular file succeeded")
	}
}

func TestLocalAdminToken(t *testing.T) {
	st := admintest.OpenStore(t)
	node := admintest.NewNode(nodeID)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	start := func() *admin.Server {
		srv, err := admin.Start(context.Background(), admin.Options{Node: node, Store: st, SocketPath: sock})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	first, err := admin.ReadTokenFile(srv.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	// A restart keeps a token that still works.
	srv = start()
	if again, _ := admin.ReadTokenFile(srv.TokenFile()); again != first {
		t.Fatal("restart replaced a working local admin token")
	}
	srv.Close()
	// A lost file gets a new token, and the unreachable one is deleted.
	os.Remove(srv.TokenFile())
	srv = start()
	defer srv.Close()
	second, _ := admin.ReadTokenFile(srv.TokenFile())
	if second == first {
		t.Fatal("token not replaced")
	}
	toks, _ := st.Tokens()
	if len(toks) != 1 || !strings.Contains(second, toks[0].ID) {
		t.Fatalf("tokens after replacement: %+v", toks)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile)
	env := admintest.Start(t, admintest.NewNode(nodeID), admin.Options{
		TCPAddr: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile,
	})
	c, err := admin.NewClient("https://"+env.Server.TCPAddr(), env.AdminToken, admin.ClientOptions{CAFile: certFile})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil || st.Node.ID != nodeID {
		t.Fatalf("status over TLS: %+v, %v", st, err)
	}
	// Without the CA the certificate is refused.
	c2, _ := admin.NewClient("https://"+env.Server.TCPAddr(), env.AdminToken, admin.ClientOptions{})
	defer c2.Close()
	if _, err := c2.Status(context.Background()); err == nil {
		t.Fatal("self-signed certificate accepted without a CA file")
	}
	if _, err := admin.NewClient("http://"+env.Server.TCPAddr(), "", admin.ClientOptions{}); err == nil {
		t.Fatal("plain http accepted")
	}
}

func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "meshward test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func TestNewStartClose(t *testing.T) {
	st := admintest.OpenStore(t)
	node := admintest.NewNode(nodeID)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	if _, err := admin.New(admin.Options{Node: node, Store: st}); err == nil {
		t.Fatal("New without a socket or TCP address succeeded")
	}

	// New touches nothing; a server never started closes cleanly.
	srv, err := admin.New(admin.Options{Node: node, Store: st, SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(sock)); len(ents) != 0 {
		t.Fatalf("New created %d files", len(ents))
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
	if err := srv.Start(context.Background()); err == nil {
		t.Fatal("Start after Close succeeded")
	}

	// Start serves until Close, once.
	srv, err = admin.New(admin.Options{Node: node, Store: st, SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	tok, err := admin.ReadTokenFile(srv.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the server outlives its start context; Close stops it
	c, err := admin.NewClient(sock, tok, admin.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("status after the start context ended: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(context.Background()); err == nil {
		t.Fatal("status answered after Close")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}

	// A failed Start leaves nothing listening and the server closed.
	srv, err = admin.New(admin.Options{Node: node, Store: st, SocketPath: sock, TCPAddr: "127.0.0.1:0",
		TLSCertFile: filepath.Join(t.TempDir(), "missing.pem"), TLSKeyFile: filepath.Join(t.TempDir(), "missing.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err == nil {
		t.Fatal("Start with a missing certificate succeeded")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left after a failed Start: %v", err)
	}
	if err := srv.Start(context.Background()); err == nil {
		t.Fatal("Start after a failed Start succeeded")
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}
