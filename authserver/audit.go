package authserver

import "go.uber.org/zap"

// audit records a security decision on the audit logger: who, which client,
// which server, which scopes; never a token, code or secret.
func (e *Edge) audit(event string, s *Server, clientID, user, scope string, extra ...zap.Field) {
	fields := append([]zap.Field{
		zap.String("gateway", s.Gateway.Name),
		zap.String("server", s.Name),
		zap.String("client_id", clientID),
	}, extra...)
	if user != "" {
		fields = append(fields, zap.String("user", user))
	}
	if scope != "" {
		fields = append(fields, zap.String("scope", scope))
	}
	e.auditLog.Info(event, fields...)
}
