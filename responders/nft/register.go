package nft

import (
	"fmt"

	"github.com/meshward/meshward/responders"
)

func init() { responders.Register("nftables", fromConfig) }

// fromConfig makes the backend of the responders section's nftables
// subsection, in deps.NetNS when it is set.
func fromConfig(cfg responders.Config, deps responders.Deps) ([]responders.Backend, error) {
	opts := []Option{WithTable(cfg.Nftables.Table)}
	if deps.NetNS > 0 {
		opts = append(opts, WithNetNS(deps.NetNS))
	}
	fw, err := New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return []responders.Backend{fw}, nil
}
