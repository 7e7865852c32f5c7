package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/store"
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
		// The minimum necessary: a user limited to their recipients reads
		// the chart resources of the patients their messages are about.
		scope := s.communicationScope(c)
		if !scope.All {
			ok, err := s.patientSeen(c, scope.Recipients, patient)
			if err != nil {
				s.internal(c, "checking what a user may read", err)
				return
			}
			if !ok {
				s.refuseUnseen(c, "read", ref, ref+" concerns no patient of a Communication addressed to your recipients: "+
					"reading it needs break-glass, POST /auth/break-glass with a reason")
				return
			}
		}
		if err := s.recordAs(c, "read", patient, []string{ref}, scope.BreakGlass); err != nil {
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

// patientSeen reports whether a Communication about patient is addressed
// to one of recipients.
func (s *Server) patientSeen(c *gin.Context, recipients []string, patient string) (bool, error) {
	if patient == "" || len(recipients) == 0 {
		return false, nil
	}
	rows, err := s.cfg.Store.SearchCommunications(c.Request.Context(), store.CommunicationQuery{
		Subject: store.TokenMatch{Any: []string{patient}}, Recipient: store.TokenMatch{Any: recipients}, Limit: 1})
	return len(rows) > 0, err
}
