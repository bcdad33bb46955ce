package admin

import "fmt"

func getOpenAPI(_ *Server, _ *call) (any, error) {
	return rawBody{contentType: "application/yaml", b: openAPI}, nil
}

func getStatus(s *Server, c *call) (any, error) {
	st, err := s.statusSvc.Status(c.r.Context())
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if st.Node.Version == "" {
		st.Node.Version = s.opts.Version
	}
	return st, nil
}
