package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// readResource reads one resource mapping stored (a Patient, say).
func (s *Server) readResource(typ string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.Param("id")
		if !validID(id) {
			s.notFound(c, typ, id)
			return
		}
		res, err := s.cfg.Store.GetResource(c.Request.Context(), typ, id)
		if isNotFound(err) {
			s.notFound(c, typ, id)
			return
		}
		if err != nil {
			s.internal(c, "reading a resource", err)
			return
		}
		ref := typ + "/" + id
		body, err := s.cfg.Keys.Open(res.Sealed, []byte(ref))
		if err != nil {
			s.internal(c, "opening a resource", fmt.Errorf("%s: %w", ref, err))
			return
		}
		patient := ref
		if typ != "Patient" {
			patient = subjectOf(body)
		}
		if err := s.record(c, "read", patient, []string{ref}); err != nil {
			s.internal(c, "auditing a read", err)
			return
		}
		answer(c, http.StatusOK, body)
	}
}

// subjectOf is the Patient a resource is about (its subject), or "".
func subjectOf(body []byte) string {
	var r struct {
		Subject struct {
			Reference string `json:"reference"`
		} `json:"subject"`
	}
	if json.Unmarshal(body, &r) != nil || !strings.HasPrefix(r.Subject.Reference, "Patient/") {
		return ""
	}
	return r.Subject.Reference
}
