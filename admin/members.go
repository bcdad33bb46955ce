package admin

import (
	"fmt"
	"slices"
)

func getMembers(s *Server, c *call) (any, error) {
	ms, err := s.memberSvc.Members(c.r.Context())
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	return nonNil(ms), nil
}

func deleteMember(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	ctx := c.r.Context()
	ms, err := s.memberSvc.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	if !slices.ContainsFunc(ms, func(m Member) bool { return m.ID == id }) {
		return nil, fmt.Errorf("member %s: %w", id, ErrNotFound)
	}
	if err := s.memberSvc.RemoveMember(ctx, id); err != nil {
		return nil, fmt.Errorf("remove member %s: %w", id, err)
	}
	return map[string]string{"removed": id}, nil
}

func getPeers(s *Server, c *call) (any, error) {
	ps, err := s.memberSvc.Peers(c.r.Context())
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	return nonNil(ps), nil
}
