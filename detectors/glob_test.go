package detectors

import (
	"context"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

func TestGlobSourceFollowsMatchingFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	appendFile(t, a, "a1\n")
	appendFile(t, filepath.Join(dir, "ignored.txt"), "x\n")
	src := &GlobSource{Patterns: []string{filepath.Join(dir, "*.log")}, FromStart: true, PollInterval: 2 * time.Millisecond, Rescan: 5 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan string, 16)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	var got []string
	recv := func(n int) {
		deadline := time.After(10 * time.Second)
		for len(got) < n {
			select {
			case l := <-out:
				got = append(got, l)
			case <-deadline:
				t.Fatalf("got %q, want %d lines", got, n)
			}
		}
	}
	recv(1)
	appendFile(t, b, "b1\nb2\n") // a file that appears later is read whole
	appendFile(t, a, "a2\n")
	recv(4)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if want := []string{"a1", "a2", "b1", "b2"}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("got %q, want %q", got, want)
	}
	if files, _ := src.Files(); len(files) != 2 {
		t.Fatalf("files %v", files)
	}
}

func TestGlobSourceBadPattern(t *testing.T) {
	if err := (&GlobSource{Patterns: []string{"[x"}}).Run(t.Context(), make(chan string)); err == nil {
		t.Fatal("bad pattern accepted")
	}
}
