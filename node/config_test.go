package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseConfigOverridesDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
data_dir: /tmp/mw
site: branch-07
corroboration:
  min_nodes: 3
  window: 5m
detectors:
  paths: [/var/log/secure, /var/log/nginx/access.log]
  poll_interval: 1s
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Site != "branch-07" || cfg.Corroboration.MinNodes != 3 || cfg.Corroboration.Window != 5*time.Minute {
		t.Errorf("overrides not applied: %+v", cfg)
	}
	if len(cfg.Detectors.Paths) != 2 || cfg.Detectors.PollInterval != time.Second || cfg.Detectors.MaxSources != 100000 || cfg.Corroboration.BlockTTL != 24*time.Hour {
		t.Errorf("defaults lost: %+v", cfg)
	}
	if _, err := ParseConfig(nil); err != nil {
		t.Errorf("empty config should be all defaults: %v", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cases := map[string]string{
		"unknown key":      "bogus: 1",
		"wrong type":       "corroboration:\n  min_nodes: lots",
		"bad multiaddr":    "peers: [\"/ip4/1.2.3.4/tcp/x\"]",
		"peer without id":  "peers: [\"/ip4/1.2.3.4/tcp/7946\"]",
		"even voters":      "consensus:\n  max_voters: 4",
		"join and boot":    "consensus:\n  bootstrap: true\n  join_token: x\n  join: [\"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRawPbxPtP1eZaJpumGnyWX2DcUyd3RQnydr3eAto4Az7\"]",
		"join without tok": "consensus:\n  join: [\"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRawPbxPtP1eZaJpumGnyWX2DcUyd3RQnydr3eAto4Az7\"]",
		"bad protected":    "protected: [\"10.0.0.0/99\"]",
		"bad backend":      "responders:\n  backend: iptables",
		"bad log level":    "log_level: loud",
		"negative window":  "corroboration:\n  window: -1s",
		"zero max sources": "detectors:\n  max_sources: 0",
		"bad glob":         "detectors:\n  paths: [\"/var/log/[\"]",
	}
	fields := map[string]string{
		"unknown key": "bogus", "wrong type": "min_nodes", "bad multiaddr": "peers[0]", "peer without id": "peers[0]",
		"even voters": "consensus.max_voters", "join and boot": "consensus.join", "join without tok": "consensus.join_token",
		"bad protected": "protected[0]", "bad backend": "responders.backend", "bad log level": "log_level",
		"negative window": "corroboration.window", "zero max sources": "detectors.max_sources",
		"bad glob": "detectors.paths[0]",
	}
	for name, y := range cases {
		_, err := ParseConfig([]byte(y))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), fields[name]) {
			t.Errorf("%s: error %q does not name %q", name, err, fields[name])
		}
	}
	var fe *FieldError
	if _, err := ParseConfig([]byte("log_level: loud")); !errors.As(err, &fe) || fe.Field != "log_level" {
		t.Errorf("want a *FieldError for log_level, got %v", err)
	}
}

func TestLoadConfigExamples(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs in examples/")
	}
	for _, f := range files {
		if _, err := LoadConfig(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestConfigReportsEveryProblemAtOnce(t *testing.T) {
	_, err := ParseConfig([]byte("corroboration:\n  min_nodes: lots\nbogus: 1\npeers: [\"/ip4/1.2.3.4/tcp/x\"]\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, want := range []string{"corroboration.min_nodes (line 2)", "bogus (line 3)", "peers[0]"} {
		found := 0
		for _, l := range lines {
			if strings.HasPrefix(l, want) {
				found++
			}
		}
		if found != 1 {
			t.Errorf("want one line starting %q, got %d in:\n%s", want, found, err)
		}
	}
}
