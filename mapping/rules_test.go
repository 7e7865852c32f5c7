package mapping_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/mapping"
)

// event is a mapped ORU-like event with one order, two results and every
// provider role, for matcher and recipient tests.
func event() *mapping.Result {
	return &mapping.Result{Event: mapping.Event{
		Trigger: "ORU^R01", ControlID: "C1", SendingFacility: "GOODHEALTH", Mapped: true,
		Patient:      &mapping.Patient{Ref: "Patient/p1", Name: "DOE, Jane", MRN: "100"},
		Encounter:    "Encounter/e1",
		PatientClass: "I",
		Location:     mapping.Location{Unit: "ICU", Room: "101", Bed: "A"},
		Providers: []mapping.Provider{
			{Role: mapping.RoleAttending, Ref: "Practitioner/att"},
			{Role: mapping.RoleReferring, Ref: "Practitioner/ref"},
			{Role: mapping.RoleConsulting, Ref: "Practitioner/con"},
			{Role: mapping.RoleAdmitting, Ref: "Practitioner/adm"},
			{Role: mapping.RoleOrdering, Ref: "Practitioner/ord"},
			{Role: mapping.RolePrimaryCare, Ref: "Practitioner/pcp"},
		},
		Orders: []mapping.Order{
			{Ref: "ServiceRequest/o1", Code: "24320-4", Priority: mapping.PriorityRoutine, Control: "RE", Orderer: "Practitioner/ord"},
		},
		Results: []mapping.LabResult{
			{Ref: "Observation/k", Code: "2823-3", Value: "6.8", Flags: []string{"HH"}, Critical: true, Order: 0},
			{Ref: "Observation/na", Code: "2951-2", Value: "139", Flags: []string{"N"}, Order: 0},
		},
	}}
}

func rulesWith(t *testing.T, when, notify string) *mapping.Rules {
	t.Helper()
	src := `version: 1
care_teams:
  icu-nursing: {name: ICU nursing, units: [ICU]}
  pharmacy: {name: Pharmacy}
on_call:
  ICU:
    - {name: Day, practitioner: "urn:x|day", days: [mon, tue, wed, thu, fri], from: "08:00", to: "20:00"}
    - {name: Night, practitioner: "urn:x|night", from: "20:00", to: "08:00"}
    - {name: Weekend, reference: PractitionerRole/weekend, days: [sat, sun], from: "08:00", to: "20:00"}
rules:
  - name: r
    when: ` + when + `
    notify: ` + notify + `
    template: "{{.What}}"
`
	r, err := mapping.ParseRules([]byte(src))
	if err != nil {
		t.Fatalf("rules: %v\n%s", err, src)
	}
	return r
}

func TestMatchers(t *testing.T) {
	tests := []struct {
		name, when string
		want       bool
	}{
		{"no condition", "{}", true},
		{"trigger exact", "{trigger: [ORU^R01]}", true},
		{"trigger other", "{trigger: [ADT^A01]}", false},
		{"trigger wildcard", "{trigger: [ORU^*]}", true},
		{"trigger wildcard other", "{trigger: [ADT^*]}", false},
		{"patient class", "{patient_class: [E, I]}", true},
		{"patient class other", "{patient_class: [O]}", false},
		{"unit", "{unit: [ICU]}", true},
		{"unit other", "{unit: [4W]}", false},
		{"sending facility", "{sending_facility: [GOODHEALTH]}", true},
		{"sending facility other", "{sending_facility: [OTHER]}", false},
		{"order code", "{order_code: [24320-4]}", true},
		{"order code other", "{order_code: [58410-2]}", false},
		{"order priority", "{order_priority: [routine]}", true},
		{"order priority other", "{order_priority: [stat, asap]}", false},
		{"order control", "{order_control: [RE]}", true},
		{"order control other", "{order_control: [NW]}", false},
		{"result code", "{result_code: [2823-3]}", true},
		{"result code other", "{result_code: [718-7]}", false},
		{"interpretation critical", "{interpretation: [HH, LL]}", true},
		{"interpretation other", "{interpretation: [L]}", false},
		{"result conditions hold for one result", "{result_code: [2951-2], interpretation: [HH]}", false},
		{"all conditions", "{trigger: [ORU^R01], unit: [ICU], interpretation: [HH], order_code: [24320-4]}", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := event()
			got := rulesWith(t, tt.when, "[attending]").Route(res, testNow)
			if (len(got) == 1) != tt.want {
				t.Fatalf("matched = %v, want %v", len(got) == 1, tt.want)
			}
		})
	}
}

func TestMatchedResultsAreWhatTheCommunicationIsAbout(t *testing.T) {
	res := event()
	got := rulesWith(t, "{interpretation: [HH]}", "[attending]").Route(res, testNow)
	if len(got) != 1 {
		t.Fatalf("got %d notifications", len(got))
	}
	c := communication(t, res, got[0])
	var about []string
	for _, a := range c.About {
		about = append(about, *a.Reference)
	}
	if !slices.Equal(about, []string{"ServiceRequest/o1", "Observation/k"}) {
		t.Errorf("about = %v, want the order and the critical result only", about)
	}
}

func communication(t *testing.T, res *mapping.Result, n mapping.Notification) *fhir.Communication {
	t.Helper()
	for _, r := range res.Resources {
		if r.Reference() == n.Communication {
			return r.Body.(*fhir.Communication)
		}
	}
	t.Fatalf("no %s in the resources", n.Communication)
	return nil
}

func TestRecipientSources(t *testing.T) {
	tuesdayNoon := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	tuesdayNight := time.Date(2026, 11, 3, 23, 0, 0, 0, time.UTC)
	wednesdayEarly := time.Date(2026, 11, 4, 3, 0, 0, 0, time.UTC) // Tuesday's night shift
	saturdayNoon := time.Date(2026, 11, 7, 12, 0, 0, 0, time.UTC)
	day := "Practitioner/" + fhir.ID("Practitioner", "urn:x", "day")
	night := "Practitioner/" + fhir.ID("Practitioner", "urn:x", "night")
	tests := []struct {
		notify string
		at     time.Time
		want   []string
	}{
		{"[attending]", testNow, []string{"Practitioner/att"}},
		{"[referring]", testNow, []string{"Practitioner/ref"}},
		{"[consulting]", testNow, []string{"Practitioner/con"}},
		{"[admitting]", testNow, []string{"Practitioner/adm"}},
		{"[ordering]", testNow, []string{"Practitioner/ord"}},
		{"[primary-care]", testNow, []string{"Practitioner/pcp"}},
		{"[on_call]", tuesdayNoon, []string{day}},
		{"[on_call]", tuesdayNight, []string{night}},
		{"[on_call]", wednesdayEarly, []string{night}},
		{"[on_call]", saturdayNoon, []string{"PractitionerRole/weekend"}},
		{"[care_team]", testNow, []string{"CareTeam/icu-nursing"}},
		{"[care_team:pharmacy]", testNow, []string{"CareTeam/pharmacy"}},
		{`["practitioner:urn:x|day"]`, testNow, []string{day}},
		{"[reference:PractitionerRole/rrt]", testNow, []string{"PractitionerRole/rrt"}},
		{"[attending, ordering, attending]", testNow, []string{"Practitioner/att", "Practitioner/ord"}},
	}
	for _, tt := range tests {
		t.Run(tt.notify+" "+tt.at.Format("Mon 15:04"), func(t *testing.T) {
			res := event()
			got := rulesWith(t, "{}", tt.notify).Route(res, tt.at)
			if len(got) != 1 {
				t.Fatalf("got %d notifications", len(got))
			}
			if !slices.Equal(got[0].Recipients, tt.want) {
				t.Errorf("recipients = %v, want %v", got[0].Recipients, tt.want)
			}
			// Every recipient the bridge defines is in the resources.
			for _, r := range got[0].Recipients {
				if strings.HasPrefix(r, "PractitionerRole/") || strings.HasPrefix(r, "Practitioner/") && !strings.Contains(r, "-") {
					continue
				}
				found := false
				for _, x := range res.Resources {
					found = found || x.Reference() == r
				}
				if !found {
					t.Errorf("%s is a recipient but not among the resources", r)
				}
			}
		})
	}
}

func TestNoRecipientNoCommunication(t *testing.T) {
	res := event()
	res.Event.Location.Unit = "4W" // no on-call list for 4W
	got := rulesWith(t, "{}", "[on_call]").Route(res, testNow)
	if len(got) != 0 {
		t.Fatalf("got %d notifications, want none", len(got))
	}
	if len(res.Outcome) != 1 || res.Outcome[0].Location != "rule r" {
		t.Errorf("outcome = %v, want one issue naming the rule", res.Outcome)
	}
}

func TestPriorityFloor(t *testing.T) {
	res := event() // has a critical result
	got := rulesWith(t, "{}", "[attending]").Route(res, testNow)
	if got[0].Priority < mapping.PriorityUrgent {
		t.Errorf("critical result routed %s, want at least urgent", got[0].Priority)
	}
	res = event()
	res.Event.Results = nil
	res.Event.Orders[0].Priority = mapping.PriorityStat
	got = rulesWith(t, "{}", "[attending]").Route(res, testNow)
	if got[0].Priority < mapping.PriorityUrgent {
		t.Errorf("STAT order routed %s, want at least urgent", got[0].Priority)
	}
	res = event()
	res.Event.Results = nil
	got = rulesWith(t, "{}", "[attending]").Route(res, testNow)
	if got[0].Priority != mapping.PriorityRoutine {
		t.Errorf("routine order routed %s, want routine", got[0].Priority)
	}
}

func TestParseRulesErrors(t *testing.T) {
	tests := []struct {
		name, src, where string
	}{
		{"empty", "", ""},
		{"not yaml", "rules: [", ""},
		{"wrong version", "version: 2\nrules: []", "version"},
		{"unknown key", "version: 1\nrulez: []", ""},
		{"unknown key in rule", "version: 1\nrules:\n- name: a\n  wen: {}\n  notify: [attending]\n  template: x", ""},
		{"bad name", "version: 1\nrules:\n- name: A B\n  notify: [attending]\n  template: x", "rule 1.name"},
		{"duplicate name", "version: 1\nrules:\n- {name: a, notify: [attending], template: x}\n- {name: a, notify: [attending], template: x}", "rule 2 (a)"},
		{"bad trigger", "version: 1\nrules:\n- {name: a, when: {trigger: [admit]}, notify: [attending], template: x}", "rule 1 (a) when.trigger"},
		{"bad priority", "version: 1\nrules:\n- {name: a, priority: high, notify: [attending], template: x}", "rule 1 (a) priority"},
		{"bad escalate_after", "version: 1\nrules:\n- {name: a, escalate_after: soon, notify: [attending], template: x}", "rule 1 (a) escalate_after"},
		{"too short escalate_after", "version: 1\nrules:\n- {name: a, escalate_after: 1s, notify: [attending], template: x}", "rule 1 (a) escalate_after"},
		{"bad order priority", "version: 1\nrules:\n- {name: a, when: {order_priority: [now]}, notify: [attending], template: x}", "rule 1 (a) when.order_priority"},
		{"bad category", "version: 1\nrules:\n- {name: a, category: gossip, notify: [attending], template: x}", "rule 1 (a) category"},
		{"no recipients", "version: 1\nrules:\n- {name: a, template: x}", "rule 1 (a) notify"},
		{"unknown source", "version: 1\nrules:\n- {name: a, notify: [everyone], template: x}", "rule 1 (a) notify"},
		{"unknown team", "version: 1\nrules:\n- {name: a, notify: [care_team:nope], template: x}", "rule 1 (a) notify"},
		{"no template", "version: 1\nrules:\n- {name: a, notify: [attending]}", "rule 1 (a) template"},
		{"template syntax", "version: 1\nrules:\n- {name: a, notify: [attending], template: '{{.What'}", "rule 1 (a) template"},
		{"template unknown field", "version: 1\nrules:\n- {name: a, notify: [attending], template: '{{.Patient.SSN}}'}", "rule 1 (a) template"},
		{"bad time zone", "version: 1\ntimezone: Mars/Olympus\nrules: []", "timezone"},
		{"bad shift time", "version: 1\non_call:\n  ICU:\n  - {practitioner: 'a|b', from: '25:00', to: '08:00'}\nrules: []", `on_call."ICU"[1].from`},
		{"bad shift day", "version: 1\non_call:\n  ICU:\n  - {practitioner: 'a|b', days: [someday]}\nrules: []", `on_call."ICU"[1].days`},
		{"shift without who", "version: 1\non_call:\n  ICU:\n  - {from: '08:00', to: '20:00'}\nrules: []", `on_call."ICU"[1]`},
		{"bad reference", "version: 1\non_call:\n  ICU:\n  - {reference: 'Patient/x'}\nrules: []", `on_call."ICU"[1].reference`},
		{"too large", "version: 1\n#" + strings.Repeat("x", mapping.MaxRulesBytes), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mapping.ParseRules([]byte(tt.src))
			var re *mapping.RulesError
			if !errors.As(err, &re) {
				t.Fatalf("ParseRules = %v, want a *RulesError", err)
			}
			if re.Where != tt.where {
				t.Errorf("Where = %q, want %q (error: %v)", re.Where, tt.where, err)
			}
		})
	}
}

func TestDefaultRulesParseAndShipWithTheBinary(t *testing.T) {
	r, err := mapping.ParseRules(mapping.DefaultRulesYAML())
	if err != nil || r == nil {
		t.Fatalf("default rules: %v", err)
	}
	if _, err := mapping.ParseRules(mustRead(t, "testdata/rules.yaml")); err != nil {
		t.Fatalf("test rules: %v", err)
	}
}

// mapMessage parses and maps an inline message (segments joined by CR).
func mapMessage(t *testing.T, segs ...string) *mapping.Result {
	t.Helper()
	msg, err := hl7.Parse([]byte(strings.Join(segs, "\r")))
	if err != nil {
		t.Fatal(err)
	}
	return mapping.New(mapping.Config{}).Map(msg)
}

const (
	mshORU = "MSH|^~\\&|LAB|GOODHEALTH|CAREBRIDGE|CAREBRIDGE|20261103143000-0500||ORU^R01^ORU_R01|K-1|P|2.5.1"
	pid    = "PID|1||100234^^^GOODHEALTH^MR||TESTPATIENT^ALEX||19800101|F"
	pd1    = "PD1||||4001^CAREGIVER^PAULA^^^DR"
)

// pv1ICU: inpatient in ICU 101-A, attending 1234, visit V5001.
var pv1ICU = segment("PV1", map[int]string{1: "1", 2: "I", 3: "ICU^101^A^GOODHEALTH",
	7: "1234^WELBY^MARCUS^^^DR", 19: "V5001^^^GOODHEALTH^VN", 44: "20261101080000-0500"})

// segment writes a segment with the given fields.
func segment(id string, fields map[int]string) string {
	n := 0
	for k := range fields {
		n = max(n, k)
	}
	parts := make([]string, n+1)
	parts[0] = id
	for k, v := range fields {
		parts[k] = v
	}
	return strings.Join(parts, "|")
}

// A critical potassium result reaches the ordering provider and the
// unit's on-call, at least urgent.
func TestCriticalPotassiumReachesOrdererAndOnCall(t *testing.T) {
	res := mapMessage(t, mshORU, pid, pv1ICU,
		"ORC|RE|ORD1001^CPOE|F7001^LAB|||||||||2001^ORDERLY^OLIVIA^^^DR",
		"OBR|1|ORD1001^CPOE|F7001^LAB|24320-4^Basic metabolic panel^LN|||20261103140000-0500|||||||||2001^ORDERLY^OLIVIA^^^DR||||||||F",
		"OBX|1|NM|2823-3^Potassium^LN||6.8|mmol/L^mmol/L^UCUM|3.5-5.1|HH|||F",
		"OBX|2|NM|2951-2^Sodium^LN||139|mmol/L^mmol/L^UCUM|136-145|N|||F")
	rules := testRules(t)
	notes := rules.Route(res, testNow) // Tuesday 14:30: the day intensivist is on call
	orderer := "Practitioner/" + fhir.ID("Practitioner", "", "2001")
	onCall := "Practitioner/" + fhir.ID("Practitioner", "", "9001")
	var critical *mapping.Notification
	for i := range notes {
		if notes[i].Rule == "critical-result" {
			critical = &notes[i]
		}
	}
	if critical == nil {
		t.Fatalf("no critical-result notification; got %+v, outcome %v", notes, res.Outcome)
	}
	if !slices.Contains(critical.Recipients, orderer) || !slices.Contains(critical.Recipients, onCall) {
		t.Errorf("recipients = %v, want the orderer %s and the on-call %s", critical.Recipients, orderer, onCall)
	}
	if critical.Priority < mapping.PriorityUrgent {
		t.Errorf("priority = %s, want urgent or higher", critical.Priority)
	}
	c := communication(t, res, *critical)
	text := *c.Payload[0].ContentString
	if !strings.Contains(text, "6.8") || !strings.Contains(text, "HH") || strings.Contains(text, "139") {
		t.Errorf("payload %q: want the critical potassium and not the normal sodium", text)
	}
}

func TestRoutineA08NotifiesNobodyByDefault(t *testing.T) {
	res := mapMessage(t, strings.Replace(mshORU, "ORU^R01^ORU_R01", "ADT^A08^ADT_A01", 1), "EVN|A08|20261103143000", pid, pd1, pv1ICU)
	if notes := mapping.DefaultRules().Route(res, testNow); len(notes) != 0 {
		t.Errorf("A08 notified %+v, want nobody", notes)
	}
}

func TestMergeNotifiesPrimaryCare(t *testing.T) {
	res := mapMessage(t, strings.Replace(mshORU, "ORU^R01^ORU_R01", "ADT^A40^ADT_A39", 1), "EVN|A40|20261103143000", pid, pd1,
		"MRG|100555^^^GOODHEALTH^MR")
	notes := mapping.DefaultRules().Route(res, testNow)
	pcp := "Practitioner/" + fhir.ID("Practitioner", "", "4001")
	if len(notes) != 1 || notes[0].Rule != "records-merged" || !slices.Equal(notes[0].Recipients, []string{pcp}) {
		t.Fatalf("notifications = %+v, want records-merged to the primary care provider %s", notes, pcp)
	}
	if res.Event.PriorPatient == "" {
		t.Error("the merged-away record is not in the event")
	}
}

func TestTemplatesAreBounded(t *testing.T) {
	for _, tmpl := range []string{
		`{{define "a"}}{{template "a" .}}{{template "a" .}}{{end}}{{template "a" .}}`,
		`{{range 1000000000}}{{end}}`,
		`{{block "b" .}}x{{end}}`,
		`{{printf "%999999999d" 1}}`,
		`{{printf "%*d" 999999999 1}}`,
	} {
		src := "version: 1\nrules:\n- name: a\n  notify: [attending]\n  template: '" + strings.ReplaceAll(tmpl, "'", "''") + "'\n"
		if _, err := mapping.ParseRules([]byte(src)); err == nil {
			t.Errorf("template %s was accepted", tmpl)
		}
	}
	src := "version: 1\nrules:\n- name: a\n  notify: [attending]\n  template: '{{range .Results}}{{printf \"%-12s\" .Code}}{{end}}'\n"
	if _, err := mapping.ParseRules([]byte(src)); err != nil {
		t.Errorf("a plain range and printf were refused: %v", err)
	}
}

// TestEscalationTiers: tier 1 is whoever is on call for the unit at that
// time (the same reference routing gives), tier 2 the unit's care teams.
func TestEscalationTiers(t *testing.T) {
	r := testRules(t)
	day := r.EscalationTier("ICU", 1, testNow) // Tuesday 14:30 UTC
	night := r.EscalationTier("ICU", 1, testNow.Add(8*time.Hour))
	if len(day) != 1 || len(night) != 1 || day[0] == night[0] || !strings.HasPrefix(day[0], "Practitioner/") {
		t.Errorf("on-call tier: day %v, night %v", day, night)
	}
	res := mapMessage(t, mshORU, pid, pv1ICU,
		"ORC|RE|ORD1001^CPOE|F7001^LAB|||||||||2001^ORDERLY^OLIVIA^^^DR",
		"OBR|1|ORD1001^CPOE|F7001^LAB|2823-3^Potassium^LN",
		"OBX|1|NM|2823-3^Potassium^LN||6.9|mmol/L|3.5-5.1|HH|||F")
	notes := r.Route(res, testNow)
	if len(notes) == 0 || !slices.Contains(notes[0].Recipients, day[0]) {
		t.Errorf("routing's on-call %v does not include the tier's %v", notes, day)
	}
	if teams := r.EscalationTier("ICU", 2, testNow); len(teams) != 1 || teams[0] != "CareTeam/icu-nursing" {
		t.Errorf("team tier = %v", teams)
	}
	if none := r.EscalationTier("NOWHERE", 1, testNow); len(none) != 0 {
		t.Errorf("unknown unit tier = %v", none)
	}
}

// TestEscalateAfterGoesWithTheNotification: a rule's escalate_after is on
// each Notification it produces; "never" is negative; unset is zero.
func TestEscalateAfterGoesWithTheNotification(t *testing.T) {
	for value, want := range map[string]time.Duration{"": 0, "escalate_after: 90s": 90 * time.Second, "escalate_after: never": -1} {
		src := "version: 1\nrules:\n- name: a\n  priority: urgent\n  notify: [attending]\n  template: x\n"
		if value != "" {
			src += "  " + value + "\n"
		}
		r, err := mapping.ParseRules([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", value, err)
		}
		notes := r.Route(mapMessage(t, mshORU, pid, pv1ICU), testNow)
		if len(notes) != 1 || notes[0].EscalateAfter != want {
			t.Errorf("%q: notifications %+v, want EscalateAfter %v", value, notes, want)
		}
	}
}
