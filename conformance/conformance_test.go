// Package conformance holds carebridge's black-box suites. This one runs
// against a live server: it builds the carebridge binary, starts
// "carebridge serve" on loopback ports (on SQLite, and on PostgreSQL when
// CAREBRIDGE_TEST_POSTGRES is set), registers an EHR client, seeds a
// synthetic data set through the API itself and an HTTP-posted HL7v2
// message, and then exercises, as a Go client over HTTP, every
// interaction, search parameter and include the server's
// CapabilityStatement lists (https://hl7.org/fhir/R4/http.html,
// https://hl7.org/fhir/R4/search.html), each with the exact result the data
// set must give. Every resource and Bundle the server answers is validated
// as FHIR R4.
//
// The statement and the suite cannot drift apart: a capability the
// statement lists that no case covers fails the suite, and so does a case
// for a capability the statement does not list.
package conformance

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/store/storetest"
)

// rulesFile routes the HL7v2 result to one Communication of known shape.
const rulesFile = "testdata/rules.yaml"

func TestFHIRAPI(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		runBackend(t, storage{dataDir: t.TempDir()})
	})
	t.Run("postgres", func(t *testing.T) {
		url := storetest.PostgresSchema(t) // skips, or fails under CAREBRIDGE_TEST_REQUIRE_SERVICES=1
		runBackend(t, storage{dataDir: t.TempDir(), databaseURL: url})
	})
}

// testCase is one check against the running server. covers names the
// capabilities of the CapabilityStatement it exercises, as capability
// keys ("Communication searchParam status"); write cases change the data
// set and run after every other case.
type testCase struct {
	name   string
	covers []string
	write  bool
	run    func(t *testing.T, w *world)
}

func allCases() []testCase {
	var all []testCase
	all = append(all, communicationSearchCases()...)
	all = append(all, readCases()...)
	all = append(all, errorCases()...)
	all = append(all, auditCases()...)
	all = append(all, writeCases()...)
	all = append(all, resourceSearchCases()...)
	all = append(all, subscriptionCases()...)
	all = append(all, workflowCases()...)
	all = append(all, auditImportCases()...)
	return all
}

func runBackend(t *testing.T, st storage) {
	key := registerClients(t, st)
	srv := startServer(t, st, "--rules", rulesFile)
	w := newWorld(t, srv.httpAddr, key)
	cases := allCases()
	// The statement and the data set come first, outside any subtest, so
	// that every case (and -run of one) has them.
	claimed := loadStatement(t, w)
	seed(t, w)
	t.Run("CapabilityStatement", func(t *testing.T) { checkCoverage(t, w, claimed, cases) })
	for _, write := range []bool{false, true} {
		for _, c := range cases {
			if c.write != write {
				continue
			}
			t.Run(c.name, func(t *testing.T) { c.run(t, w) })
		}
	}
	srv.stop(t)
}

// capResource is a CapabilityStatement.rest.resource.
type capResource struct {
	Type        string `json:"type"`
	Interaction []struct {
		Code string `json:"code"`
	} `json:"interaction"`
	Versioning        string   `json:"versioning"`
	ReadHistory       bool     `json:"readHistory"`
	UpdateCreate      bool     `json:"updateCreate"`
	ConditionalCreate bool     `json:"conditionalCreate"`
	ConditionalRead   string   `json:"conditionalRead"`
	ConditionalUpdate bool     `json:"conditionalUpdate"`
	ConditionalDelete string   `json:"conditionalDelete"`
	SearchInclude     []string `json:"searchInclude"`
	SearchRevInclude  []string `json:"searchRevInclude"`
	SearchParam       []struct {
		Name       string `json:"name"`
		Definition string `json:"definition"`
		Type       string `json:"type"`
	} `json:"searchParam"`
	Operation []struct {
		Name string `json:"name"`
	} `json:"operation"`
}

// keys are the capabilities a resource entry claims.
func (r capResource) keys() []string {
	var ks []string
	add := func(format string, args ...any) { ks = append(ks, r.Type+" "+fmt.Sprintf(format, args...)) }
	for _, i := range r.Interaction {
		add("interaction %s", i.Code)
	}
	for _, p := range r.SearchParam {
		add("searchParam %s", p.Name)
	}
	for _, s := range r.SearchInclude {
		add("searchInclude %s", s)
	}
	for _, s := range r.SearchRevInclude {
		add("searchRevInclude %s", s)
	}
	for _, o := range r.Operation {
		add("operation %s", o.Name)
	}
	if r.Versioning != "" && r.Versioning != "no-version" {
		add("versioning %s", r.Versioning)
	}
	for flag, on := range map[string]bool{
		"readHistory": r.ReadHistory, "updateCreate": r.UpdateCreate, "conditionalCreate": r.ConditionalCreate,
		"conditionalUpdate": r.ConditionalUpdate,
		"conditionalRead":   r.ConditionalRead != "" && r.ConditionalRead != "not-supported",
		"conditionalDelete": r.ConditionalDelete != "" && r.ConditionalDelete != "not-supported",
	} {
		if on {
			add("%s", flag)
		}
	}
	return ks
}

// capStatement is the part of the CapabilityStatement the suite reads.
type capStatement struct {
	ResourceType string   `json:"resourceType"`
	Status       string   `json:"status"`
	Kind         string   `json:"kind"`
	FHIRVersion  string   `json:"fhirVersion"`
	Format       []string `json:"format"`
	Rest         []struct {
		Mode     string `json:"mode"`
		Security struct {
			Extension []struct {
				URL       string `json:"url"`
				Extension []struct {
					URL      string `json:"url"`
					ValueURI string `json:"valueUri"`
				} `json:"extension"`
			} `json:"extension"`
		} `json:"security"`
		Resource    []capResource `json:"resource"`
		Interaction []struct {
			Code string `json:"code"`
		} `json:"interaction"`
		SearchParam []struct {
			Name string `json:"name"`
		} `json:"searchParam"`
		Operation []struct {
			Name string `json:"name"`
		} `json:"operation"`
	} `json:"rest"`
}

// loadStatement reads /metadata into w.capability and returns the
// capability keys it claims.
func loadStatement(t *testing.T, w *world) []string {
	t.Helper()
	r := w.do(t, req{token: tokenNone, target: "metadata"})
	if r.status != http.StatusOK {
		t.Fatalf("GET /metadata: %d %s", r.status, r.body)
	}
	var cs capStatement
	decode(t, r.body, &cs)
	if cs.ResourceType != "CapabilityStatement" || cs.FHIRVersion != "4.0.1" || cs.Kind != "instance" || len(cs.Rest) != 1 || cs.Rest[0].Mode != "server" {
		t.Fatalf("GET /metadata is not a server CapabilityStatement of FHIR 4.0.1: %s", r.body)
	}
	if !slices.Contains(cs.Format, "application/fhir+json") {
		t.Errorf("format %v lacks application/fhir+json", cs.Format)
	}
	rest := cs.Rest[0]
	var claimed []string
	for _, i := range rest.Interaction {
		claimed = append(claimed, "system interaction "+i.Code)
	}
	for _, p := range rest.SearchParam {
		claimed = append(claimed, "system searchParam "+p.Name)
	}
	for _, o := range rest.Operation {
		claimed = append(claimed, "system operation "+o.Name)
	}
	w.capability = map[string]capResource{}
	for _, res := range rest.Resource {
		if _, dup := w.capability[res.Type]; dup {
			t.Errorf("the statement lists %s twice", res.Type)
		}
		w.capability[res.Type] = res
		claimed = append(claimed, res.keys()...)
	}
	// The token endpoint the statement names is the SMART one.
	tokenURL := ""
	for _, ext := range rest.Security.Extension {
		if ext.URL == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" {
			for _, e := range ext.Extension {
				if e.URL == "token" {
					tokenURL = e.ValueURI
				}
			}
		}
	}
	if tokenURL != w.root+"/auth/token" {
		t.Errorf("the statement's token endpoint is %q, want %q", tokenURL, w.root+"/auth/token")
	}
	return claimed
}

// checkCoverage compares what the statement claims with what the cases
// cover, in both directions.
func checkCoverage(t *testing.T, w *world, claimed []string, cases []testCase) {
	covered := map[string]bool{}
	for _, c := range cases {
		for _, k := range c.covers {
			covered[k] = true
		}
	}
	var missing, extra []string
	for _, k := range claimed {
		if !covered[k] {
			missing = append(missing, k)
		}
	}
	for k := range covered {
		if !slices.Contains(claimed, k) {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("the CapabilityStatement lists what no case covers; add cases for:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("cases cover what the CapabilityStatement does not list (list it, or drop the cases):\n  %s", strings.Join(extra, "\n  "))
	}
}
