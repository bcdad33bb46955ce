package responders_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/backendtest"
)

// closer is a dry run that counts its Close calls.
type closer struct {
	*responders.DryRun
	name   string
	closed *[]string
}

func (c closer) Name() string { return c.name }
func (c closer) Close() error {
	*c.closed = append(*c.closed, c.name)
	return nil
}

func TestBuildMakesEnabledBackendsInOrder(t *testing.T) {
	var closed []string
	fake := func(name string) responders.Factory {
		return func(responders.Config, responders.Deps) ([]responders.Backend, error) {
			return []responders.Backend{closer{responders.NewDryRun(nil), name, &closed}}, nil
		}
	}
	backendtest.Register(t, "nftables", fake("nftables"))
	backendtest.Register(t, "dns", fake("dns"))
	backendtest.Register(t, "exec", fake("exec"))

	cfg := responders.DefaultConfig()
	cfg.Nftables.Enabled = true
	cfg.DNS.Enabled = true
	cfg.Exec = []responders.ExecConfig{{Add: []string{"true"}}}
	bs, err := responders.Build(cfg, responders.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range bs.List {
		names = append(names, b.Name())
	}
	if want := []string{"dry-run", "nftables", "dns", "exec"}; !slices.Equal(names, want) {
		t.Fatalf("built %v, want %v", names, want)
	}
	if bs.DryRun == nil || bs.DryRun != bs.List[0] {
		t.Errorf("DryRun = %v, want the first backend", bs.DryRun)
	}
	if err := bs.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"exec", "dns", "nftables"}; !slices.Equal(closed, want) {
		t.Errorf("closed %v, want %v", closed, want)
	}

	// Only what is enabled is built.
	bs, err = responders.Build(responders.DefaultConfig(), responders.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if len(bs.List) != 1 || bs.List[0].Name() != "dry-run" {
		t.Errorf("defaults built %d backends, want the dry run alone", len(bs.List))
	}
}

func TestBuildFailureClosesWhatWasBuilt(t *testing.T) {
	var closed []string
	backendtest.Register(t, "nftables", func(responders.Config, responders.Deps) ([]responders.Backend, error) {
		return []responders.Backend{closer{responders.NewDryRun(nil), "nftables", &closed}}, nil
	})
	boom := errors.New("boom")
	backendtest.Register(t, "dns", func(responders.Config, responders.Deps) ([]responders.Backend, error) {
		return nil, errors.Join(errors.New("dns: cannot"), boom)
	})
	cfg := responders.DefaultConfig()
	cfg.Nftables.Enabled, cfg.DNS.Enabled = true, true
	_, err := responders.Build(cfg, responders.Deps{})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "responders.dns: cannot") {
		t.Fatalf("err = %v, want the dns factory's, under responders.dns", err)
	}
	if !slices.Equal(closed, []string{"nftables"}) {
		t.Errorf("closed %v after the failure, want [nftables]", closed)
	}
}

func TestBuildNamesUnregisteredBackend(t *testing.T) {
	backendtest.Register(t, "dns", nil) // as if its package were not imported
	cfg := responders.DefaultConfig()
	cfg.DNS.Enabled = true
	_, err := responders.Build(cfg, responders.Deps{})
	if err == nil || !strings.HasPrefix(err.Error(), "responders.dns: no backend registered") {
		t.Fatalf("err = %v, want one naming responders.dns", err)
	}
}

func TestTestRegistrationRestoresThePrevious(t *testing.T) {
	before := responders.Registered()
	t.Run("inner", func(t *testing.T) {
		backendtest.Register(t, "dry-run", func(responders.Config, responders.Deps) ([]responders.Backend, error) {
			return nil, errors.New("dry-run: replaced")
		})
		backendtest.Register(t, "brand-new", func(responders.Config, responders.Deps) ([]responders.Backend, error) {
			return nil, nil
		})
		if _, err := responders.Build(responders.DefaultConfig(), responders.Deps{}); err == nil {
			t.Fatal("the test registration was not used")
		}
	})
	if after := responders.Registered(); !slices.Equal(before, after) {
		t.Fatalf("registered %v after the test, want %v", after, before)
	}
	bs, err := responders.Build(responders.DefaultConfig(), responders.Deps{})
	if err != nil || len(bs.List) != 1 {
		t.Fatalf("the original dry run is not back: %v, %v", bs, err)
	}
}

func TestRegisterRejectsDuplicates(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a second registration of dry-run did not panic")
		}
	}()
	responders.Register("dry-run", func(responders.Config, responders.Deps) ([]responders.Backend, error) { return nil, nil })
}
