package authserver

import "testing"

func TestServerAt(t *testing.T) {
	support := &Server{Name: "support", Path: "/support"}
	nested := &Server{Name: "nested", Path: "/teams/ops"}
	e := New(Options{PublicURL: "https://mcp.example.com"}, []*Server{support, nested})
	for _, tt := range []struct {
		path string
		want *Server
	}{
		{"/support", support},
		{"/support/", support},
		{"/support/mcp/x", support},
		{"/supportx", nil},
		{"/suppor", nil},
		{"/teams/ops", nested},
		{"/teams/ops/mcp", nested},
		{"/teams", nil},
		{"/teams/opsx", nil},
		{"/", nil},
		{"", nil},
		{"support", nil},
		{"//support", nil},
	} {
		if got := e.ServerAt(tt.path); got != tt.want {
			t.Errorf("ServerAt(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}
