package dns

import (
	"fmt"

	"github.com/meshward/meshward/responders"
)

func init() { responders.Register("dns", fromConfig) }

// fromConfig makes the sinkhole of the responders section's dns
// subsection.
func fromConfig(cfg responders.Config, _ responders.Deps) ([]responders.Backend, error) {
	d := cfg.DNS
	s, err := New(Config{UnboundPath: d.UnboundPath, RPZPath: d.RPZPath, RPZOrigin: d.RPZOrigin,
		Reload: d.Reload, ReloadTimeout: d.ReloadTimeout})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	return []responders.Backend{s}, nil
}
