package admintest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/store"
)

// Env is a running admin API over a fake node and an in-memory store.
type Env struct {
	Node   *Node
	Store  *store.Store
	Server *admin.Server
	Socket string
	// AdminToken is the local admin token the server wrote.
	AdminToken string
}

// OpenStore opens an in-memory store, closed when the test ends.
func OpenStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Start serves the admin API for node on a Unix socket in a temporary
// directory, over an in-memory store; opts may adjust the options (its
// Node, Store and SocketPath are set here). Everything is closed when the
// test ends.
func Start(t testing.TB, node *Node, opts admin.Options) *Env {
	t.Helper()
	return StartWithStore(t, node, OpenStore(t), opts)
}

// StartWithStore is Start over a given store, which the caller closes.
func StartWithStore(t testing.TB, node *Node, st *store.Store, opts admin.Options) *Env {
	t.Helper()
	opts.Node, opts.Store = node, st
	if opts.SocketPath == "" {
		opts.SocketPath = filepath.Join(t.TempDir(), "admin.sock")
	}
	srv, err := admin.New(opts)
	if err != nil {
		t.Fatalf("admin API: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close admin API: %v", err)
		}
	})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("start admin API: %v", err)
	}
	tok, err := admin.ReadTokenFile(srv.TokenFile())
	if err != nil {
		t.Fatalf("read admin token: %v", err)
	}
	return &Env{Node: node, Store: st, Server: srv, Socket: opts.SocketPath, AdminToken: tok}
}

// Client returns a client of the API's socket that presents token; it is
// closed when the test ends.
func (e *Env) Client(t testing.TB, token string) *admin.Client {
	t.Helper()
	c, err := admin.NewClient(e.Socket, token, admin.ClientOptions{})
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewToken creates a token with role and name through the API, as the
// local admin (so the audit trail records it), and returns it with its
// secret.
func (e *Env) NewToken(t testing.TB, role admin.Role, name string) admin.CreatedToken {
	t.Helper()
	ct, err := e.Client(t, e.AdminToken).CreateToken(context.Background(), admin.TokenRequest{Name: name, Role: role})
	if err != nil {
		t.Fatalf("create %s token %q: %v", role, name, err)
	}
	return ct
}

// TokenFile creates a token as NewToken does and returns the path of a
// file holding its secret, for the CLI's --token-file.
func (e *Env) TokenFile(t testing.TB, role admin.Role, name string) string {
	t.Helper()
	return WriteTokenFile(t, e.NewToken(t, role, name).Secret)
}

// WriteTokenFile writes secret, as the CLI prints it, to a file with mode
// 0600 in a temporary directory and returns its path.
func WriteTokenFile(t testing.TB, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "api.token")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatalf("write token file: %v", err)
	}
	return p
}
