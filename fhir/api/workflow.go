package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// The clinician workflow on Communications written through the API.
//
// A reply is a Communication whose inResponseTo names Communication/X:
// X must exist and be one the writer may read; the reply joins X's thread,
// whose root is X's partOf Communication when X is itself a reply, else
// X: carebridge adds partOf Communication/<root> when the reply names no
// partOf Communication, and refuses one that names another. A reply stays
// with X's patient (subject), and without recipients it goes to X's
// sender.
//
// A sender recalls a message by setting its status to entered-in-error:
// a system client with Communication update scope may, a user only for a
// Communication whose sender is one of their recipients (their own). The
// recall is audited as communication.recalled besides the update, the
// message leaves its recipients' inboxes and stops escalating, and it is
// final: a recalled Communication is not changed again (409).

// actionRecalled is the audit action of a recall (audit's BALP mapping
// shows it as an Application Activity that updates).
const actionRecalled = "communication.recalled"

// threadRef is a reference as the workflow reads it.
type threadRef struct {
	Reference string `json:"reference"`
}

// threadView is what the workflow reads of a Communication.
type threadView struct {
	InResponseTo []threadRef       `json:"inResponseTo"`
	PartOf       []threadRef       `json:"partOf"`
	Recipient    []json.RawMessage `json:"recipient"`
}

// communicationID is the id of a reference to one of this server's
// Communications ("Communication/X", a versioned one, or one under the
// FHIR base), or false.
func (s *Server) communicationID(ref string) (string, bool) {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	if strings.Contains(ref, "://") {
		rest, ok := strings.CutPrefix(ref, s.base+"/")
		if !ok {
			return "", false
		}
		ref = rest
	}
	id, ok := strings.CutPrefix(ref, "Communication/")
	return id, ok && validID(id)
}

// communicationRefs are the indexes and ids of the Communications refs
// name.
func (s *Server) communicationRefs(refs []threadRef) (at []int, ids []string) {
	for i, r := range refs {
		if id, ok := s.communicationID(r.Reference); ok {
			at, ids = append(at, i), append(ids, id)
		}
	}
	return at, ids
}

// threaded applies the reply rules to a Communication about to be stored
// as version of id (row and stored from communicationFrom): when it
// answers another, it is checked against that one and joined to its
// thread, and returned re-made when carebridge added to it. breakGlass
// says the writer could read the one answered only by breaking the glass.
// When not ok, the request has been answered.
func (s *Server) threaded(c *gin.Context, interaction string, row store.CommunicationRow, stored []byte, id string, version int, now time.Time) (_ store.CommunicationRow, _ []byte, breakGlass, ok bool) {
	var reply threadView
	if err := json.Unmarshal(stored, &reply); err != nil {
		s.fail(c, http.StatusUnprocessableEntity, problem{Code: fhir.CodeInvalid, Details: "the Communication cannot be read"})
		return row, nil, false, false
	}
	at, answered := s.communicationRefs(reply.InResponseTo)
	if len(answered) == 0 {
		return row, stored, false, true
	}
	expr := "Communication.inResponseTo[" + strconv.Itoa(at[0]) + "]"
	if len(answered) > 1 {
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: "Communication.inResponseTo[" + strconv.Itoa(at[1]) + "]",
			Code: fhir.CodeValue, Details: "a reply answers one Communication"})
		return row, nil, false, false
	}
	x := answered[0]
	if x == id {
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: expr, Code: fhir.CodeValue, Details: "a Communication cannot answer itself"})
		return row, nil, false, false
	}
	orig, err := s.cfg.Store.GetCommunication(c.Request.Context(), x)
	if isNotFound(err) {
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: expr, Code: fhir.CodeValue, Details: "Communication/" + x + " is not known: a reply answers a Communication carebridge holds"})
		return row, nil, false, false
	}
	if err != nil {
		s.internal(c, "reading the Communication a reply answers", err)
		return row, nil, false, false
	}
	if breakGlass, ok = s.mayRead(c, interaction, orig); !ok {
		return row, nil, false, false
	}
	if orig.Status == store.StatusEnteredInError {
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: expr, Code: fhirCodeBusinessRule,
			Details: "Communication/" + x + " was recalled by its sender (entered-in-error): it is not answered"})
		return row, nil, false, false
	}
	root, err := s.threadRoot(orig)
	if err != nil {
		s.internal(c, "reading the thread of the Communication a reply answers", err)
		return row, nil, false, false
	}
	if root == id {
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: expr, Code: fhir.CodeValue, Details: "Communication/" + x + " belongs to this Communication's own thread"})
		return row, nil, false, false
	}
	partAt, parts := s.communicationRefs(reply.PartOf)
	for i, p := range parts {
		if p != root {
			s.fail(c, http.StatusUnprocessableEntity, problem{Expression: "Communication.partOf[" + strconv.Itoa(partAt[i]) + "]", Code: fhir.CodeValue,
				Details: "a reply to Communication/" + x + " is part of its thread, Communication/" + root + ", and of no other Communication"})
			return row, nil, false, false
		}
	}
	if row.Subject != "" && orig.Subject != "" && row.Subject != orig.Subject {
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: "Communication.subject", Code: fhir.CodeValue,
			Details: "a reply is about the subject of the Communication it answers (Communication/" + x + "): it cannot move to another"})
		return row, nil, false, false
	}
	var add []member
	if len(parts) == 0 {
		add = append(add, member{"partOf", appendRef(reply.PartOf, "Communication/"+root)})
	}
	if len(reply.Recipient) == 0 {
		if orig.Sender == "" {
			s.fail(c, http.StatusUnprocessableEntity, problem{Expression: "Communication.recipient", Code: fhir.CodeRequired,
				Details: "the reply names no recipient, and Communication/" + x + " has no sender to answer"})
			return row, nil, false, false
		}
		add = append(add, member{"recipient", appendRef(nil, orig.Sender)})
	}
	if len(add) == 0 {
		return row, stored, breakGlass, true
	}
	body, err := withMembers(stored, add)
	if err != nil {
		s.internal(c, "joining a reply to its thread", err)
		return row, nil, false, false
	}
	identifier := row.Identifier
	row, stored, ok = s.communicationFrom(c, body, id, version, now)
	row.Identifier = identifier
	return row, stored, breakGlass, ok
}

// mayWriteAbout holds a user's write to the minimum necessary when it
// names a patient (subject, before the write: before): a Communication
// about a patient whose chart the user may not read (none about them is
// addressed to the user's recipients) would open that chart to them. It
// needs break-glass (breakGlass: flag the write) and is otherwise refused,
// 403 and audited. A subject the write keeps, or none, needs nothing.
func (s *Server) mayWriteAbout(c *gin.Context, interaction, subject, before string) (breakGlass, ok bool) {
	p := c.MustGet(keyPrincipal).(access.Principal)
	scope := s.communicationScope(c)
	if p.Kind != access.KindUser || subject == "" || subject == before || (scope.All && !scope.BreakGlass) {
		return false, true
	}
	seen, err := s.patientSeen(c, p.Recipients, subject)
	if err != nil {
		s.internal(c, "checking what a user may write", err)
		return false, false
	}
	if seen {
		return false, true
	}
	if scope.BreakGlass {
		return true, true
	}
	s.refuseUnseen(c, interaction, subject, "a Communication about "+subject+" would open a chart you may not read (no message about them is "+
		"addressed to your recipients): writing it needs break-glass, POST /auth/break-glass with a reason")
	return false, false
}

// sentByUser holds a Communication a user creates to being sent by them:
// its sender must be one of their recipients (the references that stand
// for them), and without a sender it gets the first of those that is a
// Practitioner or PractitionerRole. A user cannot send in another's name.
// When not ok, the request has been answered.
func (s *Server) sentByUser(c *gin.Context, row store.CommunicationRow, stored []byte, id string, now time.Time) (_ store.CommunicationRow, _ []byte, ok bool) {
	p := c.MustGet(keyPrincipal).(access.Principal)
	if p.Kind != access.KindUser {
		return row, stored, true
	}
	if row.Sender != "" {
		if slices.Contains(p.Recipients, row.Sender) {
			return row, stored, true
		}
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: "Communication.sender", Code: fhirCodeBusinessRule,
			Details: "you send as yourself: the sender must be one of the references linked to your account (carebridge users set-recipients)"})
		return row, nil, false
	}
	i := slices.IndexFunc(p.Recipients, func(r string) bool {
		return strings.HasPrefix(r, "Practitioner/") || strings.HasPrefix(r, "PractitionerRole/")
	})
	if i < 0 {
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: "Communication.sender", Code: fhir.CodeRequired,
			Details: "your account is linked to no Practitioner or PractitionerRole to send as (carebridge users set-recipients)"})
		return row, nil, false
	}
	sender, _ := json.Marshal(threadRef{Reference: p.Recipients[i]}) // strings only: cannot fail
	body, err := withMembers(stored, []member{{"sender", sender}})
	if err != nil {
		s.internal(c, "setting a Communication's sender", err)
		return row, nil, false
	}
	identifier := row.Identifier
	row, stored, ok = s.communicationFrom(c, body, id, 1, now)
	row.Identifier = identifier
	return row, stored, ok
}

// threadRoot is the root of the thread orig belongs to: its partOf
// Communication when it is itself a reply, else orig.
func (s *Server) threadRoot(orig store.CommunicationRow) (string, error) {
	body, err := s.open(orig)
	if err != nil {
		return "", err
	}
	var v threadView
	if err := json.Unmarshal(body, &v); err != nil {
		return "", err
	}
	if _, answers := s.communicationRefs(v.InResponseTo); len(answers) > 0 {
		if _, parts := s.communicationRefs(v.PartOf); len(parts) > 0 {
			return parts[0], nil
		}
	}
	return orig.ID, nil
}

// appendRef is the JSON array of refs with one more reference.
func appendRef(refs []threadRef, ref string) json.RawMessage {
	b, _ := json.Marshal(append(slices.Clone(refs), threadRef{Reference: ref})) // strings only: cannot fail
	return b
}

// withMembers is body with members replaced (those it has) or added.
func withMembers(body []byte, set []member) ([]byte, error) {
	ms, err := members(nil, body)
	if err != nil {
		return nil, err
	}
	for _, m := range set {
		i := slices.IndexFunc(ms, func(o member) bool { return o.key == m.key })
		if i >= 0 {
			ms[i].value = m.value
		} else {
			ms = append(ms, m)
		}
	}
	return encodeMembers(ms), nil
}

// recalledDetails says why a recalled Communication is not changed.
const recalledDetails = " was recalled (status entered-in-error): it is not changed again"

// refuseRecalled answers 409 for a write to a recalled Communication.
func (s *Server) refuseRecalled(c *gin.Context, id string) {
	s.fail(c, http.StatusConflict, problem{Expression: "Communication.status", Code: fhirCodeBusinessRule, Details: "Communication/" + id + recalledDetails})
}

// fhirCodeBusinessRule is the issue code of a write the workflow refuses.
const fhirCodeBusinessRule fhir.IssueCode = "business-rule"

// mayRecall says whether the request's principal may recall cur: a
// system client may (its token permits updates), a user only their own
// message, one whose sender is one of their recipients. When not, it
// answers 403 itself, audited as a refused interaction.
func (s *Server) mayRecall(c *gin.Context, interaction string, cur store.CommunicationRow) bool {
	p := c.MustGet(keyPrincipal).(access.Principal)
	if p.Kind != access.KindUser || (cur.Sender != "" && slices.Contains(p.Recipients, cur.Sender)) {
		return true
	}
	ref := "Communication/" + cur.ID
	s.refuseUnseen(c, interaction, ref, "only its sender recalls "+ref+" (status entered-in-error): its sender is not you (none of your recipients)")
	return false
}

// communicationDocumentation is the CapabilityStatement's documentation
// of Communication: the scopes, and the workflow rules above.
const communicationDocumentation = "Secure messages carebridge made from HL7v2 events; search needs system/Communication.s, read, vread and history .r, create .c, update and patch (JSON Patch) .u. " +
	"Replies: a Communication whose inResponseTo names Communication/X (on create, update as create and update) needs X to exist (else 422 at Communication.inResponseTo[0]) and to be readable by the writer (else 403); " +
	"it joins X's thread, whose root is X's partOf Communication when X is itself a reply, else X: without a partOf Communication it gets partOf Communication/<root>, and one naming another is 422 at Communication.partOf; " +
	"its subject must be X's when both are set (422 at Communication.subject); without recipient it goes to X's sender (422 at Communication.recipient when X has none); a recalled X is not answered (422). " +
	"A user (physician, nurse) creates Communications as themselves: sender must be one of the references linked to their account, and is set to the first Practitioner or PractitionerRole of them when absent (422 at Communication.sender otherwise). " +
	"part-of=Communication/<root>&_sort=sent lists a thread. " +
	"Recall: an update or patch to status entered-in-error, by a system client or by a user whose recipients include the Communication's sender (others 403), is audited as communication.recalled besides the update; " +
	"the message leaves its recipients' inboxes and stops escalating, still reads and is still found (status:not=entered-in-error leaves it out), and any later update or patch of it is 409 Conflict (code business-rule, at Communication.status)."
