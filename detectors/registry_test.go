package detectors

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
)

// registerForTest replaces the factory of a source kind (nil removes the
// kind) until the test ends.
func registerForTest(t *testing.T, name string, f SourceFactory) {
	t.Helper()
	t.Cleanup(OverrideSource(name, f))
}

func sourceNames(srcs []NamedSource) []string {
	var out []string
	for _, s := range srcs {
		out = append(out, s.Name)
	}
	return out
}

func TestBuiltinSourceKinds(t *testing.T) {
	if got, want := SourceKinds(), []string{"files", "journald", "syslog"}; !slices.Equal(got, want) {
		t.Fatalf("kinds %v, want %v", got, want)
	}
}

func TestNewSourcesBuildsWhatTheSectionEnables(t *testing.T) {
	c := DefaultConfig()
	srcs, err := NewSources(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := sourceNames(srcs); !slices.Equal(got, []string{"files"}) {
		t.Fatalf("default sources %v, want [files]", got)
	}
	g, ok := srcs[0].Source.(*GlobSource)
	if !ok || !slices.Equal(g.Patterns, c.Paths) || g.PollInterval != c.PollInterval || g.FromStart {
		t.Fatalf("files source %+v", srcs[0].Source)
	}

	c.Paths, c.FromStart = []string{"/var/log/secure"}, true
	c.Syslog.Enabled, c.Syslog.UDP, c.Syslog.MaxConns = true, "", 7
	c.Journald.Enabled = true
	if srcs, err = NewSources(c); err != nil {
		t.Fatal(err)
	}
	if got := sourceNames(srcs); !slices.Equal(got, []string{"files", "journald", "syslog"}) {
		t.Fatalf("sources %v", got)
	}
	if g := srcs[0].Source.(*GlobSource); !g.FromStart || g.Patterns[0] != "/var/log/secure" {
		t.Errorf("files source %+v", g)
	}
	if j := srcs[1].Source.(*JournaldSource); !slices.Equal(j.Matches, c.Journald.Matches) {
		t.Errorf("journald source %+v", j)
	}
	if s := srcs[2].Source.(*SyslogSource); s.UDPAddr != "" || s.TCPAddr != c.Syslog.TCP || s.MaxConns != 7 ||
		s.MaxMessageBytes != c.Syslog.MaxMessageBytes || s.IdleTimeout != c.Syslog.IdleTimeout {
		t.Errorf("syslog source %+v", s)
	}

	c.Paths = nil
	if srcs, err = NewSources(c); err != nil || slices.Contains(sourceNames(srcs), "files") {
		t.Errorf("no paths: %v, %v", sourceNames(srcs), err)
	}
	c.Enabled = false
	if srcs, err = NewSources(c); err != nil || srcs != nil {
		t.Errorf("disabled: %v, %v", sourceNames(srcs), err)
	}
}

func TestNewSourcesValidates(t *testing.T) {
	c := DefaultConfig()
	c.PollInterval = 0
	_, err := NewSources(c)
	var fe *confcheck.FieldError
	if !errors.As(err, &fe) || fe.Field != "detectors.poll_interval" {
		t.Fatalf("got %v, want a field error for detectors.poll_interval", err)
	}
}

// holdSource yields fixed lines, then waits for the end of ctx.
type holdSource []string

func (l holdSource) Run(ctx context.Context, out chan<- string) error {
	for _, s := range l {
		select {
		case out <- s:
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

func TestRegisteredKindIsBuilt(t *testing.T) {
	errBroken := errors.New("broken")
	registerForTest(t, "test", func(c Config) (Source, error) {
		if c.RulesDir == "broken" {
			return nil, errBroken
		}
		return holdSource{"x"}, nil
	})
	srcs, err := NewSources(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := sourceNames(srcs); !slices.Equal(got, []string{"files", "test"}) {
		t.Fatalf("sources %v", got)
	}
	c := DefaultConfig()
	c.RulesDir = "broken"
	if _, err := NewSources(c); !errors.Is(err, errBroken) {
		t.Fatalf("a factory's error is lost: %v", err)
	}
	// Replacing a built-in kind, and removing one, last until the test ends.
	t.Run("replace", func(t *testing.T) {
		registerForTest(t, "files", func(Config) (Source, error) { return holdSource{"y"}, nil })
		registerForTest(t, "test", nil)
		srcs, err := NewSources(DefaultConfig())
		if err != nil || len(srcs) != 1 || srcs[0].Name != "files" {
			t.Fatalf("sources %v, %v", sourceNames(srcs), err)
		}
		if _, ok := srcs[0].Source.(holdSource); !ok {
			t.Fatalf("files not replaced: %T", srcs[0].Source)
		}
	})
	srcs, _ = NewSources(DefaultConfig())
	if _, ok := srcs[0].Source.(*GlobSource); !ok || len(srcs) != 2 {
		t.Fatalf("registrations not restored: %v", sourceNames(srcs))
	}
}

func TestRegisterSourceTwicePanics(t *testing.T) {
	for name, f := range map[string]SourceFactory{"files": newFilesSource, "": newFilesSource, "nil": nil} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterSource(%q) did not panic", name)
				}
			}()
			RegisterSource(name, f)
		}()
	}
	if got := SourceKinds(); slices.Contains(got, "nil") || slices.Contains(got, "") {
		t.Fatalf("a refused registration was kept: %v", got)
	}
}

func TestWaitReady(t *testing.T) {
	if err := WaitReady(t.Context(), holdSource{}); err != nil {
		t.Fatalf("a plain source is not ready: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		addr string
		fail bool
	}{{"127.0.0.1:0", false}, {ln.Addr().String(), true}} {
		src := &SyslogSource{TCPAddr: tc.addr}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, make(chan string)) }()
		err := WaitReady(ctx, src)
		if (err != nil) != tc.fail {
			t.Errorf("WaitReady on %s: %v", tc.addr, err)
		}
		if _, tcp := src.Addrs(); !tc.fail && tcp == nil {
			t.Errorf("ready without an address")
		}
		cancel()
		if err := <-done; (err != nil) != tc.fail || (tc.fail && !errors.Is(err, src.ReadyErr())) {
			t.Errorf("Run: %v (ReadyErr %v)", err, src.ReadyErr())
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := WaitReady(ctx, &SyslogSource{}); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitReady of a source never run: %v", err)
	}
}

// countProc is a Processor that counts lines and fires on every one.
type countProc struct{ n int }

func (p *countProc) Process(line []byte, emit func(intel.Sighting)) {
	p.n++
	emit(intel.Sighting{Detector: string(line)})
}

func TestRunFeedsAnyProcessor(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	p := &countProc{}
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, holdSource{"a", "b"}, p, func(s intel.Sighting) {
			got = append(got, s.Detector)
			if len(got) == 2 {
				cancel()
			}
		})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.n != 2 || !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("processed %d lines, emitted %v", p.n, got)
	}
}
