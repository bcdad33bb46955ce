package exec

import (
	"fmt"

	"github.com/meshward/meshward/responders"
)

func init() { responders.Register("exec", fromConfig) }

// fromConfig makes one backend per entry of the responders section's exec
// list.
func fromConfig(cfg responders.Config, _ responders.Deps) ([]responders.Backend, error) {
	var out []responders.Backend
	for i, e := range cfg.Exec {
		c, err := New(Config{Name: e.Name, Add: e.Add, Remove: e.Remove, Types: e.Types,
			Timeout: e.Timeout, StatePath: e.StatePath})
		if err != nil {
			return nil, fmt.Errorf("exec[%d]: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}
