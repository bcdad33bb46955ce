// Package stixtest validates STIX 2.1 output against the OASIS JSON
// schemas, for tests. The schemas are read from the shared reference data
// (internal/testenv.SharedData); a test skips where they are missing.
package stixtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/meshward/meshward/internal/testenv"
)

// schemaBase is the URL prefix of the schemas' $ids; the files beside
// them sit under the same relative paths.
const schemaBase = "http://raw.githubusercontent.com/oasis-open/cti-stix2-json-schemas/stix2.1/schemas/"

// dirLoader serves the schema URLs from a directory and refuses any other
// URL: nothing is fetched from the network.
type dirLoader struct{ dir string }

func (l dirLoader) Load(url string) (any, error) {
	rel, ok := strings.CutPrefix(url, schemaBase)
	if !ok {
		return nil, fmt.Errorf("schema %s is outside %s", url, schemaBase)
	}
	f, err := os.Open(filepath.Join(l.dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return jsonschema.UnmarshalJSON(f)
}

// Validator checks STIX objects against the schema of their type.
type Validator struct {
	c       *jsonschema.Compiler
	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema
}

// typeSchema maps an object type to its schema file.
var typeSchema = map[string]string{
	"bundle": "common/bundle.json", "marking-definition": "common/marking-definition.json",
	"relationship": "sros/relationship.json", "sighting": "sros/sighting.json",
	"ipv4-addr": "observables/ipv4-addr.json", "ipv6-addr": "observables/ipv6-addr.json",
	"domain-name": "observables/domain-name.json", "url": "observables/url.json", "file": "observables/file.json",
}

// New returns a validator reading the schemas from the shared data; the
// test skips when they are missing.
func New(t testing.TB) *Validator {
	t.Helper()
	dir := testenv.SharedData(t, "stix2.1-schemas")
	c := jsonschema.NewCompiler()
	c.UseLoader(dirLoader{dir})
	return &Validator{c: c, schemas: make(map[string]*jsonschema.Schema)}
}

func (v *Validator) schema(typ string) (*jsonschema.Schema, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.schemas[typ]; ok {
		return s, nil
	}
	file, ok := typeSchema[typ]
	if !ok {
		file = "sdos/" + typ + ".json"
	}
	s, err := v.c.Compile(schemaBase + file)
	if err != nil {
		return nil, fmt.Errorf("compile schema of %s: %w", typ, err)
	}
	v.schemas[typ] = s
	return s, nil
}

// Object validates one object (JSON) against the schema of its type and
// returns the type.
func (v *Validator) Object(raw []byte) (string, error) {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return "", err
	}
	m, ok := inst.(map[string]any)
	if !ok {
		return "", fmt.Errorf("not an object: %.80s", raw)
	}
	typ, _ := m["type"].(string)
	s, err := v.schema(typ)
	if err != nil {
		return typ, err
	}
	if err := s.Validate(inst); err != nil {
		return typ, fmt.Errorf("%s %v: %w", typ, m["id"], err)
	}
	return typ, nil
}

// Bundle validates a bundle as a whole (bundle.json) and each of its
// objects against its own type's schema; it returns how many objects of
// each type it validated.
func (v *Validator) Bundle(raw []byte) (map[string]int, error) {
	if _, err := v.Object(raw); err != nil {
		return nil, err
	}
	var b struct {
		Objects []json.RawMessage `json:"objects"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, err
	}
	counts := make(map[string]int)
	for i, o := range b.Objects {
		typ, err := v.Object(o)
		if err != nil {
			return counts, fmt.Errorf("object %d: %w", i, err)
		}
		counts[typ]++
	}
	return counts, nil
}
