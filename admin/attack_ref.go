package admin

import "slices"

// AttackRef names a sighting's technique and its tactics from the node's
// ATT&CK catalog (intel.attack_path); absent when the node has no
// catalog or the catalog does not hold the technique.
type AttackRef struct {
	Name    string   `json:"name"`
	Parent  string   `json:"parent,omitempty"`  // the technique a sub-technique belongs to
	Tactics []string `json:"tactics,omitempty"` // "TA0006 Credential Access"
}

// attackNamer fills in the AttackRef of sightings, looking each
// technique up once.
type attackNamer struct {
	svc   AttackService
	cache map[string]*AttackRef
}

func (s *Server) attackNamer() *attackNamer {
	as, _ := s.opts.Node.(AttackService)
	return &attackNamer{svc: as, cache: make(map[string]*AttackRef)}
}

// name sets sg.Attack from sg's technique.
func (a *attackNamer) name(sg *Sighting) { sg.Attack = a.ref(sg.Sighting.Technique) }

// ref is technique id named from the catalog, or nil.
func (a *attackNamer) ref(id string) *AttackRef {
	if a.svc == nil || id == "" {
		return nil
	}
	ref, seen := a.cache[id]
	if !seen {
		if t, ok, _ := a.svc.AttackTechnique(id); ok {
			ref = &AttackRef{Name: t.Name, Parent: t.Parent}
			for _, ta := range t.Tactics {
				n := ta.ShortName
				if ta.ID != "" {
					n = ta.ID + " " + ta.Name
				}
				ref.Tactics = append(ref.Tactics, n)
			}
		}
		a.cache[id] = ref
	}
	return ref
}

// RuleService tells which ATT&CK technique a detection rule reports. It
// is optional: without it policies name no technique.
type RuleService interface {
	// RuleTechnique is the technique of the rule named detector in the
	// node's pack, "" when it has no such rule.
	RuleTechnique(detector string) string
}

// PolicyTechnique is a technique the evidence of a policy was detected
// under, with its name and tactics when the node's catalog holds it.
type PolicyTechnique struct {
	ID string `json:"id"`
	*AttackRef
}

// nameTechniques fills in the techniques of the policies' evidence: the
// rule each evidence names, that rule's technique, the catalog's names.
func (s *Server) nameTechniques(views []PolicyView) {
	rs, _ := s.opts.Node.(RuleService)
	if rs == nil {
		return
	}
	names := s.attackNamer()
	for i := range views {
		for _, e := range views[i].Evidence {
			id := rs.RuleTechnique(e.Detector)
			if id == "" || slices.ContainsFunc(views[i].Techniques, func(t PolicyTechnique) bool { return t.ID == id }) {
				continue
			}
			views[i].Techniques = append(views[i].Techniques, PolicyTechnique{ID: id, AttackRef: names.ref(id)})
		}
	}
}
