package conformance

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The chart mapping stored, as the resource searches find it. The HL7v2
// result (seed_test.go) maps Patient {pat}, Encounter {enc},
// ServiceRequest {sr} and Observations {obs} and {obs2}; seedMapped adds
// an order for {pat} ({sr2}) and a discharge of another patient ({pat2},
// {enc2}), neither routed to anyone (testdata/rules.yaml routes results
// only), so that no Communication of the data set changes:
//
//	Patient {pat}   urn:oid:2.16.840.1.113883.3.9999.1|200345, urn:carebridge:id:PAYERX|A99001
//	Patient {pat2}  urn:carebridge:id:GOODHEALTH|100234, urn:carebridge:id:SSA|999-00-1234
//	Encounter {enc}   {pat}  unknown   no period                                   …3.9999.3|V6001
//	Encounter {enc2}  {pat2} finished  2026-11-03T08:00:00Z – 2026-11-06T13:30:00Z  GOODHEALTH|V5001
//	ServiceRequest {sr}   {pat} completed  no authoredOn          CPOE|ORD3101, LAB|F9101
//	ServiceRequest {sr2}  {pat} active     2026-11-03T15:15:00Z   …3.9999.4|ORD3001
//	Observation {obs}, {obs2}  {pat} final  2026-11-03T19:20:00Z (14:20-05:00), no identifier
const (
	sysMRN   = "urn:oid:2.16.840.1.113883.3.9999.1"
	sysVisit = "urn:oid:2.16.840.1.113883.3.9999.3"
)

// mappedMessages are the HL7v2 messages seedMapped sends, and what each
// is waited for by.
var mappedMessages = []struct {
	file, wait, ref string
}{
	{"../mapping/testdata/hl7/orm-o01-new-stat-v251.hl7", "ServiceRequest?identifier=ORD3001", "sr2"},
	{"../mapping/testdata/hl7/adt-a03-v23.hl7", "Encounter?identifier=urn:carebridge:id:GOODHEALTH|V5001", "enc2"},
}

// seedMapped posts mappedMessages and learns {sr2}, {enc2} and {pat2}
// once the pipeline has stored them.
func seedMapped(t *testing.T, w *world) {
	t.Helper()
	for _, m := range mappedMessages {
		msg, err := os.ReadFile(filepath.FromSlash(m.file))
		if err != nil {
			t.Fatalf("the HL7v2 sample: %v", err)
		}
		r := w.do(t, req{method: http.MethodPost, target: "/hl7/v2", body: msg, header: []string{"Content-Type", "x-application/hl7-v2+er7"}})
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "MSA|AA|") && !strings.Contains(string(r.body), "MSA|CA|") {
			t.Fatalf("POST /hl7/v2 %s: %d %q", m.file, r.status, r.body)
		}
	}
	for _, m := range mappedMessages {
		var found bundle
		eventually(t, 30*time.Second, m.wait, func() (bool, string) {
			path, q, _ := strings.Cut(m.wait, "?")
			r := w.do(t, req{target: path + "?" + w.query(q)})
			found = bundle{}
			decode(t, r.body, &found)
			return r.status == http.StatusOK && len(found.Entry) == 1, string(r.body)
		})
		w.refs[m.ref] = headOf(found.Entry[0].Resource).ID
		if m.ref == "enc2" {
			var enc struct{ Subject struct{ Reference string } }
			decode(t, found.Entry[0].Resource, &enc)
			w.refs["pat2"], _ = strings.CutPrefix(enc.Subject.Reference, "Patient/")
		}
	}
	if w.refs["pat2"] == "" || w.refs["pat2"] == w.refs["pat"] {
		t.Fatalf("the discharged patient: %q (the result's is %q)", w.refs["pat2"], w.refs["pat"])
	}
}

// mappedSearch is a searchCase over a mapped type whose matches are
// written as placeholders ({pat}, {enc2} …).
func mappedSearch(typ string, params []string, query string, want ...string) testCase {
	covers := []string{typ + " interaction search-type"}
	for _, p := range params {
		covers = append(covers, typ+" searchParam "+p)
	}
	return testCase{name: typ + "?" + query, covers: covers, run: func(t *testing.T, w *world) {
		sc := searchCase{resource: typ, query: query, want: []string{}}
		for _, name := range want {
			sc.want = append(sc.want, w.resolve(name))
		}
		sc.ordered = strings.Contains(query, "_sort=")
		w.runSearch(t, sc)
	}}
}

func resourceSearchCases() []testCase {
	cases := []testCase{
		// Patient
		mappedSearch("Patient", nil, "", "{pat}", "{pat2}"),
		mappedSearch("Patient", []string{"_id"}, "_id={pat2}", "{pat2}"),
		mappedSearch("Patient", []string{"_id"}, "_id=conf-pat-q"),
		mappedSearch("Patient", []string{"identifier"}, "identifier="+sysMRN+"|200345", "{pat}"),
		mappedSearch("Patient", []string{"identifier"}, "identifier=100234", "{pat2}"),
		mappedSearch("Patient", []string{"identifier"}, "identifier=urn:carebridge:id:PAYERX|", "{pat}"),
		mappedSearch("Patient", []string{"identifier"}, "identifier=urn:carebridge:id:SSA|200345"),
		mappedSearch("Patient", []string{"identifier"}, "identifier:not="+sysMRN+"|200345", "{pat2}"),
		// Encounter
		mappedSearch("Encounter", []string{"_id"}, "_id={enc}", "{enc}"),
		mappedSearch("Encounter", []string{"identifier"}, "identifier="+sysVisit+"|V6001", "{enc}"),
		mappedSearch("Encounter", []string{"identifier"}, "identifier=V5001", "{enc2}"),
		mappedSearch("Encounter", []string{"patient"}, "patient={pat}", "{enc}"),
		mappedSearch("Encounter", []string{"patient"}, "patient=Patient/{pat2}", "{enc2}"),
		mappedSearch("Encounter", []string{"subject"}, "subject=Patient/{pat2}", "{enc2}"),
		mappedSearch("Encounter", []string{"subject"}, "subject=Group/conf-ward"),
		mappedSearch("Encounter", []string{"status"}, "status=finished", "{enc2}"),
		mappedSearch("Encounter", []string{"status"}, "status=http://hl7.org/fhir/encounter-status|unknown", "{enc}"),
		mappedSearch("Encounter", []string{"status"}, "status:not=finished", "{enc}"),
		mappedSearch("Encounter", []string{"date"}, "date=2026-11", "{enc2}"),                        // eq: the period lies within November
		mappedSearch("Encounter", []string{"date"}, "date=2026-11-04"),                               // it lasts longer than the 4th
		mappedSearch("Encounter", []string{"date"}, "date=ge2026-11-04&date=le2026-11-04", "{enc2}"), // it overlaps the 4th
		mappedSearch("Encounter", []string{"date"}, "date=ge2026-11-06T13:29:59Z", "{enc2}"),
		mappedSearch("Encounter", []string{"date"}, "date=gt2026-11-06T13:30:00Z"),
		mappedSearch("Encounter", []string{"date"}, "date=lt2026-11-03T08:00:01Z", "{enc2}"),
		mappedSearch("Encounter", []string{"date"}, "date=sa2026-11-02", "{enc2}"),
		mappedSearch("Encounter", []string{"date"}, "date=eb2026-11-06"),
		mappedSearch("Encounter", []string{"date"}, "date=ne2026"), // within 2026
		mappedSearch("Encounter", []string{"date"}, "date=ne2026-11-05", "{enc2}"),
		mappedSearch("Encounter", []string{"patient", "date"}, "patient={pat}&date=ge2000"), // {enc} has no period
		mappedSearch("Encounter", []string{"date"}, "_sort=-date", "{enc2}", "{enc}"),       // without a date last
		// ServiceRequest
		mappedSearch("ServiceRequest", []string{"_id"}, "_id={sr}", "{sr}"),
		mappedSearch("ServiceRequest", []string{"identifier"}, "identifier=ORD3001", "{sr2}"),
		mappedSearch("ServiceRequest", []string{"identifier"}, "identifier=urn:carebridge:id:LAB|F9101", "{sr}"),
		mappedSearch("ServiceRequest", []string{"patient"}, "patient={pat}", "{sr}", "{sr2}"),
		mappedSearch("ServiceRequest", []string{"subject"}, "subject=Patient/{pat2}"),
		mappedSearch("ServiceRequest", []string{"status"}, "status=active", "{sr2}"),
		mappedSearch("ServiceRequest", []string{"status"}, "status=completed", "{sr}"),
		mappedSearch("ServiceRequest", []string{"authored"}, "authored=2026-11-03", "{sr2}"),
		mappedSearch("ServiceRequest", []string{"authored"}, "authored=lt2026-11-03T15:15:00Z"),
		mappedSearch("ServiceRequest", []string{"authored"}, "authored=ge2026-11-03T15:15Z", "{sr2}"),
		mappedSearch("ServiceRequest", []string{"authored"}, "authored=2026-11-03T10:15:00-05:00", "{sr2}"),
		mappedSearch("ServiceRequest", []string{"authored"}, "_sort=authored", "{sr2}", "{sr}"),
		// Observation
		mappedSearch("Observation", []string{"_id"}, "_id={obs2}", "{obs2}"),
		mappedSearch("Observation", []string{"identifier"}, "identifier:missing=true", "{obs}", "{obs2}"),
		mappedSearch("Observation", []string{"identifier"}, "identifier=ORD3101"),
		mappedSearch("Observation", []string{"patient"}, "patient={pat}", "{obs}", "{obs2}"),
		mappedSearch("Observation", []string{"subject"}, "subject=Patient/{pat2}"),
		mappedSearch("Observation", []string{"status"}, "status=final", "{obs}", "{obs2}"),
		mappedSearch("Observation", []string{"status"}, "status=preliminary"),
		mappedSearch("Observation", []string{"date"}, "date=2026-11-03", "{obs}", "{obs2}"),
		mappedSearch("Observation", []string{"date"}, "date=2026-11-03T19:20:00Z", "{obs}", "{obs2}"),
		mappedSearch("Observation", []string{"date"}, "date=2026-11-04"),
		mappedSearch("Observation", []string{"date"}, "date=lt2026-11-03T19:20:00Z"),
		{name: "mapped resources page by their next links", covers: []string{"Observation interaction search-type"}, run: mappedPagingCase},
		{name: "a mapped resource search by POST", covers: []string{"ServiceRequest interaction search-type", "ServiceRequest searchParam patient", "ServiceRequest searchParam status"},
			run: func(t *testing.T, w *world) {
				w.runSearch(t, searchCase{resource: "ServiceRequest", post: true, query: "patient={pat}&status=active", want: []string{w.refs["sr2"]}})
			}},
		{name: "_summary=count of a mapped type", covers: []string{"Encounter interaction search-type"}, run: func(t *testing.T, w *world) {
			res := w.search(t, searchCase{resource: "Encounter", query: "_summary=count"})
			if res.bundle.Total == nil || *res.bundle.Total != 2 || len(res.bundle.Entry) != 0 {
				t.Errorf("total %v, %d entries; want 2 and none", res.bundle.Total, len(res.bundle.Entry))
			}
		}},
		{name: "an unknown parameter of a mapped type is ignored when lenient", covers: []string{"Patient interaction search-type", "Patient searchParam _id"},
			run: func(t *testing.T, w *world) {
				w.runSearch(t, searchCase{resource: "Patient", query: "_id={pat}&colour=blue", header: []string{"Prefer", "handling=lenient"},
					want: []string{w.refs["pat"]}, warn: "colour"})
			}},
	}
	errs := []errorCase{
		{name: "an unknown parameter of a mapped type is 400 naming it", covers: []string{"Patient interaction search-type"},
			req: req{target: "Patient?colour=blue"}, status: 400, expr: []string{"colour"}},
		{name: "a malformed date is 400 naming it", covers: []string{"Encounter interaction search-type", "Encounter searchParam date"},
			req: req{target: "Encounter?date=yesterday"}, status: 400, expr: []string{"date"}},
		{name: "R4 has no date on ServiceRequest", covers: []string{"ServiceRequest interaction search-type"},
			req: req{target: "ServiceRequest?date=2026"}, status: 400, expr: []string{"date"}},
		{name: "a status the value set lacks is 400", covers: []string{"Observation interaction search-type", "Observation searchParam status"},
			req: req{target: "Observation?status=done"}, status: 400, expr: []string{"status"}},
		{name: "a Patient search without Patient.s is 403", covers: []string{"Patient interaction search-type"},
			req: req{token: tokenPatientRead, target: "Patient?identifier=200345"}, status: 403, header: [2]string{"WWW-Authenticate", "insufficient_scope"}},
	}
	for _, ec := range errs {
		cases = append(cases, ec.testCase())
	}
	return cases
}

// mappedPagingCase walks Observation?_count=1 by its next links: one
// page per Observation, the total 2 on each, in id order.
func mappedPagingCase(t *testing.T, w *world) {
	r := req{target: "Observation?_count=1"}
	var got []string
	for i := 0; r.target != ""; i++ {
		if i > 3 {
			t.Fatal("more than 3 pages")
		}
		res := w.searchAt(t, r, "Observation")
		if res.bundle.Total == nil || *res.bundle.Total != 2 || len(res.matches) != 1 {
			t.Fatalf("page %d: total %v, matches %v", i+1, res.bundle.Total, res.matches)
		}
		got = append(got, res.matches...)
		next := res.bundle.link("next")
		if next != "" && !strings.HasPrefix(next, w.base+"/Observation?") {
			t.Fatalf("next link %q is not a search of this server", next)
		}
		r = req{target: next}
	}
	want := []string{w.refs["obs"], w.refs["obs2"]}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("pages gave %v, want %v", got, want)
	}
}
