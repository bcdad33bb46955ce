package admin

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/meshward/meshward/intel/attack"
)

// AttackService looks techniques up in the node's ATT&CK catalog
// (intel.attack_path). It is optional: a node without it answers the
// attack route with 404.
type AttackService interface {
	// AttackTechnique returns the technique (any case) and its tactics;
	// ok is false when the node has no catalog or the catalog does not
	// hold it, loaded tells which.
	AttackTechnique(id string) (t AttackTechnique, ok, loaded bool)
}

// AttackTactic is one tactic a technique serves.
type AttackTactic struct {
	ID        string `json:"id,omitempty"` // TA0006, when the catalog holds the tactic
	Name      string `json:"name,omitempty"`
	ShortName string `json:"short_name"`
}

// AttackTechnique is a technique of the node's catalog.
type AttackTechnique struct {
	ID            string         `json:"id"`
	Name          string         `json:"name"`
	Parent        string         `json:"parent,omitempty"`
	Tactics       []AttackTactic `json:"tactics"`
	Subtechniques []string       `json:"subtechniques,omitempty"`
	URL           string         `json:"url,omitempty"`
}

// AttackView is a technique and what the mesh saw under it: among the
// iocScan most recent sightings this node holds, those whose technique
// is it or one of its sub-techniques, by technique, and the most recent
// of them (at most limit).
type AttackView struct {
	Technique AttackTechnique `json:"technique"`
	// Scanned is how many of the most recent sightings were looked at.
	Scanned int `json:"scanned"`
	// Matched is how many of them carry the technique or a
	// sub-technique; ByTechnique counts them by technique.
	Matched     int            `json:"matched"`
	ByTechnique map[string]int `json:"by_technique"`
	Indicators  int            `json:"indicators"` // distinct
	Origins     int            `json:"origins"`    // distinct reporting nodes
	Sightings   []Sighting     `json:"sightings"`  // most recent first, at most limit
}

func getAttack(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	id, err := attack.NormalizeID(c.r.PathValue("technique"))
	if err != nil {
		return nil, rejected(reasonBadQuery, fmt.Errorf("%w: %w", ErrInvalid, err))
	}
	as, _ := s.opts.Node.(AttackService)
	if as == nil {
		return nil, fmt.Errorf("technique %s: this node has no ATT&CK catalog: %w", id, ErrNotFound)
	}
	t, ok, loaded := as.AttackTechnique(id)
	switch {
	case !loaded:
		return nil, fmt.Errorf("technique %s: this node has no ATT&CK catalog (intel.attack_path): %w", id, ErrNotFound)
	case !ok:
		return nil, fmt.Errorf("technique %s: not an active technique of the node's catalog: %w", id, ErrNotFound)
	}
	recs, err := s.sightingSvc.Sightings(c.r.Context(), iocScan)
	if err != nil {
		return nil, fmt.Errorf("sightings: %w", err)
	}
	v := AttackView{Technique: t, Scanned: len(recs), ByTechnique: map[string]int{}, Sightings: []Sighting{}}
	names := s.attackNamer()
	inds, origins := map[string]bool{}, map[string]bool{}
	for _, r := range recs { // most recently received first
		tech := strings.ToUpper(r.Sighting.Technique)
		if tech != id && !strings.HasPrefix(tech, id+".") {
			continue
		}
		v.Matched++
		v.ByTechnique[tech]++
		inds[r.Sighting.Indicator.Key()] = true
		origins[r.Origin] = true
		if len(v.Sightings) < n {
			v.Sightings = append(v.Sightings, sightingFrom(r))
			names.name(&v.Sightings[len(v.Sightings)-1])
		}
	}
	v.Indicators, v.Origins = len(inds), len(origins)
	return v, nil
}

// Attack returns a technique of the node's catalog and what the mesh saw
// under it (limit: the sightings listed, 0 for the server's default).
func (c *Client) Attack(ctx context.Context, technique string, limit int) (AttackView, error) {
	var v AttackView
	return v, c.do(ctx, "GET", "/v1/attack/"+url.PathEscape(technique), limitQuery(limit), nil, &v)
}
