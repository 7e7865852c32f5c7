package api

import (
	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
)

// resourceRoutes serves the resources mapping stored for Communications
// to point at.
func (s *Server) resourceRoutes(f *gin.RouterGroup) {
	for _, typ := range mappedTypes {
		f.GET("/"+typ+"/:id", s.authorize(typ, access.Read, "read"), s.readResource(typ))
	}
}

// resourceCapabilities are the CapabilityStatement entries of the mapped
// resources.
func (s *Server) resourceCapabilities() []map[string]any {
	var out []map[string]any
	for _, typ := range mappedTypes {
		out = append(out, map[string]any{"type": typ, "documentation": "stored by mapping for Communications to refer to; read needs system/" + typ + ".r",
			"interaction": []map[string]any{{"code": "read"}}})
	}
	return out
}
