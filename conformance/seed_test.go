package conformance

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The data set. Every name, number and reference in it is invented.
//
// Thirteen Communications: twelve the suite PUTs under known ids
// (conf-01 … conf-12; conf-10 in two versions), and one ("H") the pipeline
// makes from the HL7v2 result testdata/rules.yaml routes, sent when it is
// routed (now, after every seeded one). The cases name them by the two
// characters after "conf-", and H.
//
//	   status            priority category            identifier       subject   encounter sender                 recipients                   sent (UTC)                received
//	01 completed         routine  CAT|notification    MSG|1001         P         E         Practitioner/conf-dr-a Practitioner/conf-nurse-1    2025-01-10T08:00:00       2025-01-10T08:05:00
//	02 in-progress       urgent   CAT|alert           MSG|1002         P         E2        Device/conf-monitor    conf-nurse-1, CareTeam/icu   2025-01-10T09:30:00       -
//	03 completed         stat     CAT|alert+LOC|alert MSG|1003,TKT|T-3 Q         -         Practitioner/conf-dr-b Practitioner/conf-dr-a       2025-02-01T12:00:00       2025-02-01T12:00:30
//	04 stopped           asap     CAT|reminder        loose-4 (no sys) Q         -         Practitioner/conf-dr-a Practitioner/conf-nurse-2    2025-02-15T23:59:59       2025-02-16T00:10:00
//	05 completed         -        -                   -                G         -         Organization/conf-lab  Practitioner/conf-nurse-2    2025-02-28T23:00:00 (+01) -
//	06 entered-in-error  routine  LOC|alert           MSG|1006         P         E         Practitioner/conf-dr-b CareTeam/conf-icu            2025-03-15T10:00:00       2025-03-15T10:00:00
//	07 preparation       urgent   CAT|instruction     MSG|1007         P         -         -                      -                            2025-04-01T06:00:00       -
//	08 on-hold           stat     CAT|notification    MSG|1008         Q         E2        PractitionerRole/…     Patient/conf-pat-q           2025-04-01T06:00:00.500   2025-04-02T00:00:00
//	09 unknown           routine  CAT|notification    TKT|T-9          P         E         Device/conf-monitor    Practitioner/conf-nurse-1    2025-05-20T19:45:00 (-04) -
//	10 completed (v2)    asap     CAT|alert           MSG|1010         P         -         Practitioner/conf-dr-a Practitioner/conf-nurse-1    2025-06-30T12:00:00       2025-07-01T09:00:00 (v2)
//	11 not-done          routine  CAT|reminder;CAT|notification MSG|1011 P       -         Practitioner/conf-dr-b conf-nurse-2, CareTeam/icu   2025-08-01T00:00:00       -
//	12 in-progress       urgent   |callback (no sys)  -                -         -         Device/conf-monitor    -                            2025-09-15T18:30:00       -
//	H  in-progress       stat     CAT|alert           SRC|…            P         E         Device/carebridge      Practitioner/conf-oncall     now                       -
//
// P is the Patient mapped from the HL7v2 message ({pat}), E its Encounter
// ({enc}); Q (Patient/conf-pat-q), G (Group/conf-ward) and E2
// (Encounter/conf-enc-2) are references to nothing stored. part-of: 03 →
// Communication/conf-01, 05 → Procedure/conf-proc-5, 09 →
// Communication/conf-03. based-on: 02 and 09 → ServiceRequest {sr}, 06 →
// CarePlan/conf-plan-6. None is a reply (inResponseTo): replies join
// threads (see workflow_test.go), which these part-of values are not.
const (
	sysCategory = "http://terminology.hl7.org/CodeSystem/communication-category"
	sysLocalCat = "urn:conformance:category"
	sysMsg      = "urn:conformance:msg"
	sysTicket   = "urn:conformance:ticket"
	sysSource   = "urn:carebridge:communication-source" // fhir.CommunicationSourceSystem
)

// seedComm is one Communication of the data set; references may hold
// placeholders ({pat}, {enc}, {sr}).
type seedComm struct {
	id           string
	status       string
	priority     string
	category     [][]string // CodeableConcepts of codings "system|code"
	identifier   []string   // "system|value"
	subject      string
	encounter    string
	sender       string
	recipient    []string
	partOf       []string
	basedOn      []string
	inResponseTo []string
	sent         string
	received     string
}

var seedComms = []seedComm{
	{id: "conf-01", status: "completed", priority: "routine", category: [][]string{{sysCategory + "|notification"}},
		identifier: []string{sysMsg + "|1001"}, subject: "Patient/{pat}", encounter: "Encounter/{enc}", sender: "Practitioner/conf-dr-a",
		recipient: []string{"Practitioner/conf-nurse-1"}, sent: "2025-01-10T08:00:00Z", received: "2025-01-10T08:05:00Z"},
	{id: "conf-02", status: "in-progress", priority: "urgent", category: [][]string{{sysCategory + "|alert"}},
		identifier: []string{sysMsg + "|1002"}, subject: "Patient/{pat}", encounter: "Encounter/conf-enc-2", sender: "Device/conf-monitor",
		recipient: []string{"Practitioner/conf-nurse-1", "CareTeam/conf-icu"}, basedOn: []string{"ServiceRequest/{sr}"}, sent: "2025-01-10T09:30:00Z"},
	{id: "conf-03", status: "completed", priority: "stat", category: [][]string{{sysCategory + "|alert", sysLocalCat + "|alert"}},
		identifier: []string{sysMsg + "|1003", sysTicket + "|T-3"}, subject: "Patient/conf-pat-q", sender: "Practitioner/conf-dr-b",
		recipient: []string{"Practitioner/conf-dr-a"}, partOf: []string{"Communication/conf-01"},
		sent: "2025-02-01T12:00:00Z", received: "2025-02-01T12:00:30Z"},
	{id: "conf-04", status: "stopped", priority: "asap", category: [][]string{{sysCategory + "|reminder"}},
		identifier: []string{"|loose-4"}, subject: "Patient/conf-pat-q", sender: "Practitioner/conf-dr-a",
		recipient: []string{"Practitioner/conf-nurse-2"}, sent: "2025-02-15T23:59:59Z", received: "2025-02-16T00:10:00Z"},
	{id: "conf-05", status: "completed", subject: "Group/conf-ward", sender: "Organization/conf-lab",
		recipient: []string{"Practitioner/conf-nurse-2"}, partOf: []string{"Procedure/conf-proc-5"}, sent: "2025-03-01T00:00:00+01:00"},
	{id: "conf-06", status: "entered-in-error", priority: "routine", category: [][]string{{sysLocalCat + "|alert"}},
		identifier: []string{sysMsg + "|1006"}, subject: "Patient/{pat}", encounter: "Encounter/{enc}", sender: "Practitioner/conf-dr-b",
		recipient: []string{"CareTeam/conf-icu"}, basedOn: []string{"CarePlan/conf-plan-6"}, sent: "2025-03-15T10:00:00Z", received: "2025-03-15T10:00:00Z"},
	{id: "conf-07", status: "preparation", priority: "urgent", category: [][]string{{sysCategory + "|instruction"}},
		identifier: []string{sysMsg + "|1007"}, subject: "Patient/{pat}", sent: "2025-04-01T06:00:00Z"},
	{id: "conf-08", status: "on-hold", priority: "stat", category: [][]string{{sysCategory + "|notification"}},
		identifier: []string{sysMsg + "|1008"}, subject: "Patient/conf-pat-q", encounter: "Encounter/conf-enc-2", sender: "PractitionerRole/conf-role",
		recipient: []string{"Patient/conf-pat-q"}, sent: "2025-04-01T06:00:00.500Z", received: "2025-04-02T00:00:00Z"},
	{id: "conf-09", status: "unknown", priority: "routine", category: [][]string{{sysCategory + "|notification"}},
		identifier: []string{sysTicket + "|T-9"}, subject: "Patient/{pat}", encounter: "Encounter/{enc}", sender: "Device/conf-monitor",
		recipient: []string{"Practitioner/conf-nurse-1"}, partOf: []string{"Communication/conf-03"}, basedOn: []string{"ServiceRequest/{sr}"},
		sent: "2025-05-20T15:45:00-04:00"},
	{id: "conf-10", status: "completed", priority: "asap", category: [][]string{{sysCategory + "|alert"}},
		identifier: []string{sysMsg + "|1010"}, subject: "Patient/{pat}", sender: "Practitioner/conf-dr-a",
		recipient: []string{"Practitioner/conf-nurse-1"}, sent: "2025-06-30T12:00:00Z", received: "2025-07-01T09:00:00Z"},
	{id: "conf-11", status: "not-done", priority: "routine", category: [][]string{{sysCategory + "|reminder"}, {sysCategory + "|notification"}},
		identifier: []string{sysMsg + "|1011"}, subject: "Patient/{pat}", sender: "Practitioner/conf-dr-b",
		recipient: []string{"Practitioner/conf-nurse-2", "CareTeam/conf-icu"}, sent: "2025-08-01T00:00:00Z"},
	{id: "conf-12", status: "in-progress", priority: "urgent", category: [][]string{{"|callback"}},
		sender: "Device/conf-monitor", sent: "2025-09-15T18:30:00Z"},
}

// conf10v1 is the first version of conf-10: in progress, not received.
func conf10v1() seedComm {
	c := seedComms[9]
	c.status, c.received = "in-progress", ""
	return c
}

// resource is the Communication as JSON, its placeholders resolved.
func (c seedComm) resource(w *world) []byte {
	ref := func(r string) map[string]any { return map[string]any{"reference": w.resolve(r)} }
	refs := func(rs []string) []any {
		out := make([]any, len(rs))
		for i, r := range rs {
			out[i] = ref(r)
		}
		return out
	}
	m := map[string]any{
		"resourceType": "Communication",
		"status":       c.status,
		"payload":      []any{map[string]any{"contentString": "Synthetic conformance message " + c.id}},
	}
	if c.id != "" {
		m["id"] = c.id
	}
	if c.sent != "" {
		m["sent"] = c.sent
	}
	if c.priority != "" {
		m["priority"] = c.priority
	}
	var cats []any
	for _, cc := range c.category {
		var codings []any
		for _, sc := range cc {
			system, code, _ := strings.Cut(sc, "|")
			cd := map[string]any{"code": code}
			if system != "" {
				cd["system"] = system
			}
			codings = append(codings, cd)
		}
		cats = append(cats, map[string]any{"coding": codings})
	}
	if cats != nil {
		m["category"] = cats
	}
	var ids []any
	for _, sv := range c.identifier {
		system, value, _ := strings.Cut(sv, "|")
		id := map[string]any{"value": value}
		if system != "" {
			id["system"] = system
		}
		ids = append(ids, id)
	}
	if ids != nil {
		m["identifier"] = ids
	}
	for k, v := range map[string]string{"subject": c.subject, "encounter": c.encounter, "sender": c.sender} {
		if v != "" {
			m[k] = ref(v)
		}
	}
	for k, v := range map[string][]string{"recipient": c.recipient, "partOf": c.partOf, "basedOn": c.basedOn, "inResponseTo": c.inResponseTo} {
		if len(v) > 0 {
			m[k] = refs(v)
		}
	}
	if c.received != "" {
		m["received"] = c.received
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// commName is how the cases name a Communication: "01" for conf-01, "H"
// for the pipeline's, else its id.
func (w *world) commName(id string) string {
	if id == w.refs["hl7"] {
		return "H"
	}
	if n, ok := strings.CutPrefix(id, "conf-"); ok {
		return n
	}
	return id
}

// hl7Message is the HL7v2 result the pipeline maps: a critical potassium
// for a synthetic patient.
const hl7Message = "../mapping/testdata/hl7/oru-r01-critical-k-v251.hl7"

// seed fills the server: the HL7v2 message (Patient, Encounter,
// ServiceRequest, Observations and Communication H, made by the
// pipeline), found through the API; then the seeded Communications,
// PUT as creates; then the probe client's fixed audit trail.
func seed(t *testing.T, w *world) {
	t.Helper()
	msg, err := os.ReadFile(filepath.FromSlash(hl7Message))
	if err != nil {
		t.Fatalf("the HL7v2 sample: %v", err)
	}
	r := w.do(t, req{method: http.MethodPost, target: "/hl7/v2", body: msg, header: []string{"Content-Type", "x-application/hl7-v2+er7"}})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "MSA|AA|") && !strings.Contains(string(r.body), "MSA|CA|") { // CA: MSH-15 asks for an accept ACK
		t.Fatalf("POST /hl7/v2: %d %q", r.status, r.body)
	}

	// The pipeline maps it in the background: wait for its Communication,
	// and find the Patient by _include.
	var found bundle
	eventually(t, 30*time.Second, "the pipeline's Communication", func() (bool, string) {
		r := w.do(t, req{target: "Communication?" + w.query("identifier="+sysSource+"|&_include=Communication:subject")})
		if r.status != http.StatusOK {
			return false, string(r.body)
		}
		found = bundle{}
		decode(t, r.body, &found)
		return len(found.Entry) == 2, string(r.body)
	})
	var comm struct {
		head
		Subject, Encounter struct{ Reference string }
		About              []struct{ Reference string }
	}
	for _, e := range found.Entry {
		switch h := headOf(e.Resource); {
		case e.Search.Mode == "match" && h.ResourceType == "Communication":
			decode(t, e.Resource, &comm)
		case e.Search.Mode == "include" && h.ResourceType == "Patient":
			w.refs["pat"] = h.ID
		}
	}
	w.refs["hl7"] = comm.ID
	if w.refs["pat"] == "" || comm.Subject.Reference != "Patient/"+w.refs["pat"] {
		t.Fatalf("the pipeline's Communication and its Patient: %+v, pat %q", comm, w.refs["pat"])
	}
	w.refs["enc"], _ = strings.CutPrefix(comm.Encounter.Reference, "Encounter/")
	for _, a := range comm.About {
		typ, id, _ := strings.Cut(a.Reference, "/")
		switch {
		case typ == "ServiceRequest":
			w.refs["sr"] = id
		case typ == "Observation" && w.refs["obs"] == "":
			w.refs["obs"] = id
		case typ == "Observation":
			w.refs["obs2"] = id
		}
	}
	for _, k := range []string{"enc", "sr", "obs", "obs2"} {
		if w.refs[k] == "" {
			t.Fatalf("the pipeline's Communication names no %s: %+v", k, comm)
		}
	}

	// The seeded Communications, created by PUT (update as create).
	put := func(c seedComm, status int, etag string, header ...string) {
		r := w.do(t, req{method: http.MethodPut, target: "Communication/" + c.id, body: c.resource(w), header: header})
		if r.status != status || r.header.Get("ETag") != etag {
			t.Fatalf("PUT Communication/%s: %d ETag %q, want %d %q: %s", c.id, r.status, r.header.Get("ETag"), status, etag, r.body)
		}
	}
	for _, c := range seedComms {
		if c.id == "conf-10" {
			put(conf10v1(), http.StatusCreated, `W/"1"`)
			put(c, http.StatusOK, `W/"2"`, "If-Match", `W/"1"`)
			continue
		}
		put(c, http.StatusCreated, `W/"1"`)
	}

	// The probe client's audit trail: its token, a read, a search and a
	// read its scopes refuse (see audit_test.go).
	for _, r := range []struct {
		target string
		status int
	}{
		{"Communication/conf-01", http.StatusOK},
		{"Communication?_id=conf-03", http.StatusOK},
		{"Patient/" + w.refs["pat"], http.StatusForbidden},
	} {
		if got := w.do(t, req{token: tokenProbe, target: r.target}); got.status != r.status {
			t.Fatalf("the probe's GET %s: %d, want %d: %s", r.target, got.status, r.status, got.body)
		}
	}

	// More of the chart, routed to no one (resourcesearch_test.go).
	seedMapped(t, w)
}
