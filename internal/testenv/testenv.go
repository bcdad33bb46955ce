// Package testenv decides whether a test that needs the machine's
// privileges (root, network namespaces, nftables, device-mapper) runs, skips
// or fails. On a developer's machine such a test skips with a message that
// says what it needs. Where MESHWARD_REQUIRE_PRIVILEGED=1 (CI sets it), a
// missing privilege fails the test instead, so a CI run cannot turn green by
// skipping the tests that prove enforcement.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "MESHWARD_REQUIRE_PRIVILEGED"

// Required reports whether privileged tests must run here.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Unavailable skips t with msg, or fails it when privileged tests are
// required.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s (%s=1: privileged tests must run here)", msg, RequireEnv)
	}
	t.Skip(msg)
}

// RequireRoot stops t (see Unavailable) unless the process is root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (CAP_NET_ADMIN)")
	}
}

// RequireCommand stops t (see Unavailable) unless name is on PATH; pkg is
// the Debian package that provides it.
func RequireCommand(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		Unavailable(t, "needs the %s command (Debian package %s)", name, pkg)
	}
}

// NetNS creates a network namespace called name with lo up, removed when t
// ends, and returns an fd for it (closed when t ends). It stops t (see
// Unavailable) where namespaces cannot be created.
func NetNS(t testing.TB, name string) int {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "ip", "iproute2")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		Unavailable(t, "cannot create a network namespace (ip netns add %s): %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	fd, err := openNS(name)
	if err != nil {
		t.Fatalf("open network namespace %s: %v", name, err)
	}
	t.Cleanup(func() { closeFD(fd) })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	return fd
}

// SharedData returns the directory sub of the project's reference data,
// ../shared/data beside the repository's root (the directory holding
// go.mod, found upwards from the test's directory). The data is not part
// of the repository; where it is missing the test skips and says where it
// looked.
func SharedData(t testing.TB, sub string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "data", sub)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("needs the shared reference data at %s: %v", p, err)
	}
	return p
}
