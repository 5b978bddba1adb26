package authserver

import "go.uber.org/zap"

// audit records a security decision on the audit logger: who, which client,
// which server, which scopes; never a token, code or secret. s is nil
// when the request names no server yet (a callback refused before its
// authorization is read).
func (e *Edge) audit(event string, s *Server, clientID, user, scope string, extra ...zap.Field) {
	fields := make([]zap.Field, 0, 5+len(extra))
	if s != nil {
		fields = append(fields, zap.String("gateway", s.Gateway().Name), zap.String("server", s.Name), zap.String("client_id", clientID))
	} else if clientID != "" {
		fields = append(fields, zap.String("client_id", clientID))
	}
	fields = append(fields, extra...)
	if user != "" {
		fields = append(fields, zap.String("user", user))
	}
	if scope != "" {
		fields = append(fields, zap.String("scope", scope))
	}
	e.auditLog.Info(event, fields...)
}
