package admin

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
func (a *attackNamer) name(sg *Sighting) {
	id := sg.Sighting.Technique
	if a.svc == nil || id == "" {
		return
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
	sg.Attack = ref
}
