package api

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
)

// HL7Acceptor takes one HL7v2 message in ER7 and answers its ACK once the
// message is durably stored (or refused, and kept, with AE/AR).
type HL7Acceptor interface {
	AcceptHL7(ctx context.Context, peer string, msg []byte) (ack []byte, err error)
}

// MaxHL7Bytes is the largest message POST /hl7/v2 takes, as MLLP does.
const MaxHL7Bytes = 4 << 20

// hl7Types are the media types of an ER7 message.
var hl7Types = map[string]bool{"x-application/hl7-v2+er7": true, "application/hl7-v2": true, "application/hl7-v2+er7": true}

// acceptHL7 is POST /hl7/v2 for senders that cannot speak MLLP: the same
// durable accept, the ACK in the answer's body. A message the ACK refuses
// (AE/AR) is still 200: the ACK says what is wrong, as over MLLP.
func (s *Server) acceptHL7(c *gin.Context) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || !hl7Types[mt] {
		s.fail(c, http.StatusUnsupportedMediaType, problem{Code: "not-supported", Details: "POST /hl7/v2 takes one ER7 message as x-application/hl7-v2+er7"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, MaxHL7Bytes+1))
	if err != nil {
		s.fail(c, http.StatusBadRequest, problem{Code: "structure", Details: "the message could not be read"})
		return
	}
	if len(body) > MaxHL7Bytes {
		s.fail(c, http.StatusRequestEntityTooLarge, problem{Code: "too-costly", Details: fmt.Sprintf("the message is larger than %d bytes", MaxHL7Bytes)})
		return
	}
	p := c.MustGet(keyPrincipal).(access.Principal)
	ack, err := s.cfg.HL7.AcceptHL7(c.Request.Context(), c.Request.RemoteAddr, body)
	if err != nil {
		// Not stored: no ACK, so the sender resends.
		s.cfg.Log.Error("FHIR API: accepting an HL7v2 message", "request_id", c.GetString(keyRequestID), "client", p.ID, "error", err)
		s.fail(c, http.StatusServiceUnavailable, problem{Code: "transient", Details: "the message was not stored; send it again"})
		return
	}
	c.Data(http.StatusOK, "x-application/hl7-v2+er7", ack)
}
