package admin

func getAudit(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	es, err := s.auditStore.Audit(n)
	if err != nil {
		return nil, err
	}
	return nonNil(es), nil
}

// audit writes an entry; a failure is logged and counted, never returned:
// the change it records is already made.
func (s *Server) audit(e AuditEntry) {
	if err := s.auditStore.AppendAudit(e); err != nil {
		s.metrics.auditFailures.Inc()
		s.log.Error("write audit entry", "action", e.Action, "actor", e.Actor, "err", err)
	}
}
