package admin

import "fmt"

func getMembers(s *Server, c *call) (any, error) {
	ms, err := s.memberSvc.Members(c.r.Context())
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	return nonNil(ms), nil
}

func getPeers(s *Server, c *call) (any, error) {
	ps, err := s.memberSvc.Peers(c.r.Context())
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	return nonNil(ps), nil
}
