package admin

import "fmt"

func getSightings(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	recs, err := s.sightingSvc.Sightings(c.r.Context(), n)
	if err != nil {
		return nil, fmt.Errorf("sightings: %w", err)
	}
	out := make([]Sighting, 0, len(recs))
	names := s.attackNamer()
	for _, r := range recs {
		out = append(out, sightingFrom(r))
		names.name(&out[len(out)-1])
	}
	return out, nil
}
