package confcheck

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Paths maps each line of a YAML document to the dotted path of the key (or
// sequence item) that starts on it: "corroboration.min_nodes",
// "rules[2].threshold". It returns an empty map when src is not YAML.
func Paths(src []byte) map[int]string {
	paths := make(map[int]string)
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil {
		return paths
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				paths[k.Line] = p
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, ok := paths[c.Line]; !ok || c.Kind == yaml.ScalarNode {
					paths[c.Line] = p
				}
				walk(c, p)
			}
		}
	}
	walk(&root, "")
	return paths
}

// TypeErrors rewrites a yaml.TypeError, whose messages name only a line,
// so that each message also names the field at that line
// ("corroboration.min_nodes (line 3): cannot unmarshal ..."). Unknown keys
// ("field x not found in type ...") are reported as "unknown field".
func TypeErrors(src []byte, te *yaml.TypeError) error {
	paths := Paths(src)
	var errs []error
	for _, msg := range te.Errors {
		line, rest, ok := splitLine(msg)
		if !ok {
			errs = append(errs, errors.New(msg))
			continue
		}
		p, known := paths[line]
		if f, ok := strings.CutPrefix(rest, "field "); ok {
			if i := strings.Index(f, " not found"); i > 0 {
				rest = "unknown field"
				if !known || !strings.HasSuffix(p, f[:i]) {
					p, known = f[:i], true
				}
			}
		}
		if known {
			errs = append(errs, fmt.Errorf("%s (line %d): %s", p, line, rest))
		} else {
			errs = append(errs, errors.New(msg))
		}
	}
	return errors.Join(errs...)
}

// splitLine splits "line N: rest".
func splitLine(msg string) (line int, rest string, ok bool) {
	if _, err := fmt.Sscanf(msg, "line %d:", &line); err != nil {
		return 0, msg, false
	}
	if i := strings.Index(msg, ": "); i >= 0 {
		return line, msg[i+2:], true
	}
	return line, msg, true
}
