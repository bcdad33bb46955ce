package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// --pprof serves only on loopback: any other address is refused with the
// reason, before anything listens; on loopback the profiles answer until
// stop, which closes the listener.
func TestServePprofLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.0.0.1:6060", ":6060", "localhost:6060", "127.0.0.1"} {
		if stop, err := servePprof(io.Discard, addr); err == nil {
			stop()
			t.Errorf("--pprof %q accepted", addr)
		}
	}
	var out strings.Builder
	stop, err := servePprof(&out, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := strings.TrimSpace(strings.TrimPrefix(out.String(), "profiles at "))
	resp, err := http.Get(url + "cmdline")
	if err != nil {
		stop()
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %scmdline: %s", url, resp.Status)
	}
	stop()
	if _, err := http.Get(url + "cmdline"); err == nil {
		t.Error("profiles still served after stop")
	}
}
