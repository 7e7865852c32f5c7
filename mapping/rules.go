package mapping

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"go.yaml.in/yaml/v3"
)

// Limits on a rules file: it is configuration, but it is still outside input.
const (
	MaxRulesBytes    = 1 << 20 // the whole file
	MaxRules         = 500
	MaxTemplateBytes = 8 << 10 // one rule's template source
	MaxPayloadBytes  = 4 << 10 // what one template may write
)

//go:embed default_rules.yaml
var defaultRules []byte

// DefaultRulesYAML is the rules file carebridge ships, for printing and as
// a starting point.
func DefaultRulesYAML() []byte { return bytes.Clone(defaultRules) }

// DefaultRules returns the shipped rules. They are tested, so a failure to
// parse them is a bug.
func DefaultRules() *Rules {
	r, err := ParseRules(defaultRules)
	if err != nil {
		panic("mapping: the shipped default rules do not parse: " + err.Error())
	}
	return r
}

// Rules decide who is told what. Build them with ParseRules; they are
// read-only afterwards and safe for concurrent use.
type Rules struct {
	loc    *time.Location
	sender string // Device id
	teams  []careTeam
	onCall map[string][]shift // by unit
	rules  []*rule
}

// Location is the time zone the file's schedules are written in: the
// hospital's zone, and the default for HL7 times sent without an offset.
func (r *Rules) Location() *time.Location { return r.loc }

type careTeam struct {
	id, name string
	units    []string
}

type shift struct {
	ref, name, system, value string
	days                     [7]bool // by time.Weekday
	from, to                 int     // minutes after midnight; to <= from wraps
}

// sourceKind is where a rule's recipients come from.
type sourceKind int

const (
	sourceRole      sourceKind = iota // a provider named in the message
	sourceOnCall                      // the unit's on-call list
	sourceUnitTeams                   // the care teams of the unit
	sourceTeam                        // one named care team
	sourceFixed                       // a fixed practitioner or reference
)

type source struct {
	kind  sourceKind
	role  Role
	team  string
	fixed shift // for sourceFixed: ref or identifier, name
}

type rule struct {
	name                                   string
	triggers                               []string
	classes, units, facilities             []string
	orderCodes, orderControls, resultCodes []string
	interpretations                        []string
	orderPriorities                        []Priority
	notify                                 []source
	priority                               Priority
	category                               string
	tmpl                                   *template.Template
	escalateAfter                          time.Duration // 0: the priority's default; <0: never
}

// The YAML file.
type rulesFile struct {
	Version   int                    `yaml:"version"`
	TimeZone  string                 `yaml:"timezone"`
	Sender    string                 `yaml:"sender"`
	CareTeams map[string]teamFile    `yaml:"care_teams"`
	OnCall    map[string][]shiftFile `yaml:"on_call"`
	Rules     []ruleFile             `yaml:"rules"`
}

type teamFile struct {
	Name  string   `yaml:"name"`
	Units []string `yaml:"units"`
}

type shiftFile struct {
	Name         string   `yaml:"name"`
	Practitioner string   `yaml:"practitioner"`
	Reference    string   `yaml:"reference"`
	Days         []string `yaml:"days"`
	From         string   `yaml:"from"`
	To           string   `yaml:"to"`
}

type ruleFile struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	When        whenFile `yaml:"when"`
	Notify      []string `yaml:"notify"`
	Priority    string   `yaml:"priority"`
	Category    string   `yaml:"category"`
	Template    string   `yaml:"template"`
	// EscalateAfter ("5m", "90s") overrides the priority's deadline for
	// unread messages of this rule; "never" turns escalation off.
	EscalateAfter string `yaml:"escalate_after"`
}

type whenFile struct {
	Trigger         []string `yaml:"trigger"`
	PatientClass    []string `yaml:"patient_class"`
	Unit            []string `yaml:"unit"`
	SendingFacility []string `yaml:"sending_facility"`
	OrderCode       []string `yaml:"order_code"`
	OrderPriority   []string `yaml:"order_priority"`
	OrderControl    []string `yaml:"order_control"`
	ResultCode      []string `yaml:"result_code"`
	Interpretation  []string `yaml:"interpretation"`
}

// RulesError says what is wrong in a rules file and where (a rule's number
// and name, or a section).
type RulesError struct {
	Where  string // "rule 3 (critical-result) when.order_priority"
	Reason string
}

func (e *RulesError) Error() string {
	if e.Where == "" {
		return "rules file: " + e.Reason
	}
	return "rules file: " + e.Where + ": " + e.Reason
}

var (
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	refPattern     = regexp.MustCompile(`^(Practitioner|PractitionerRole|CareTeam)/[A-Za-z0-9\-.]{1,64}$`)
	namePattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9_\-]{0,63}$`)
	triggerPattern = regexp.MustCompile(`^[A-Z0-9]{3}\^([A-Z0-9]{3}|\*)$`)
	categories     = []string{"alert", "notification", "reminder", "instruction"}
	weekdays       = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
)

// ParseRules reads a rules file (YAML; see default_rules.yaml for the
// format). Unknown keys are errors, so a typo never silently disables a
// rule.
func ParseRules(data []byte) (*Rules, error) {
	if len(data) > MaxRulesBytes {
		return nil, &RulesError{Reason: fmt.Sprintf("the file is %d bytes; the limit is %d", len(data), MaxRulesBytes)}
	}
	var f rulesFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &RulesError{Reason: "the file is empty"}
		}
		return nil, &RulesError{Reason: "not valid YAML for rules: " + err.Error()}
	}
	if f.Version != 1 {
		return nil, &RulesError{Where: "version", Reason: fmt.Sprintf("version %d is not supported (want 1)", f.Version)}
	}
	r := &Rules{loc: time.UTC, sender: "carebridge", onCall: map[string][]shift{}}
	if f.TimeZone != "" {
		loc, err := time.LoadLocation(f.TimeZone)
		if err != nil {
			return nil, &RulesError{Where: "timezone", Reason: fmt.Sprintf("unknown time zone %q", f.TimeZone)}
		}
		r.loc = loc
	}
	if f.Sender != "" {
		if !idPattern.MatchString(f.Sender) {
			return nil, &RulesError{Where: "sender", Reason: "must be a FHIR id (letters, digits, - and ., at most 64)"}
		}
		r.sender = f.Sender
	}
	teamIDs := make([]string, 0, len(f.CareTeams))
	for id := range f.CareTeams {
		teamIDs = append(teamIDs, id)
	}
	slices.Sort(teamIDs)
	for _, id := range teamIDs {
		t := f.CareTeams[id]
		if !idPattern.MatchString(id) {
			return nil, &RulesError{Where: "care_teams." + clip(id), Reason: "a care team's key must be a FHIR id (letters, digits, - and .)"}
		}
		r.teams = append(r.teams, careTeam{id: id, name: t.Name, units: t.Units})
	}
	units := make([]string, 0, len(f.OnCall))
	for u := range f.OnCall {
		units = append(units, u)
	}
	slices.Sort(units)
	for _, unit := range units {
		for i, s := range f.OnCall[unit] {
			where := fmt.Sprintf("on_call.%s[%d]", clip(unit), i+1)
			sh, err := parseShift(s, where)
			if err != nil {
				return nil, err
			}
			r.onCall[unit] = append(r.onCall[unit], sh)
		}
	}
	if len(f.Rules) > MaxRules {
		return nil, &RulesError{Where: "rules", Reason: fmt.Sprintf("%d rules; the limit is %d", len(f.Rules), MaxRules)}
	}
	seen := map[string]bool{}
	for i, rf := range f.Rules {
		ru, err := r.parseRule(i, rf)
		if err != nil {
			return nil, err
		}
		if seen[ru.name] {
			return nil, &RulesError{Where: fmt.Sprintf("rule %d (%s)", i+1, ru.name), Reason: "the name is used by an earlier rule; names must be unique (they are part of each Communication's identifier)"}
		}
		seen[ru.name] = true
		r.rules = append(r.rules, ru)
	}
	return r, nil
}

// clip shortens a user-given key for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return strconv.Quote(s[:40] + "…")
	}
	return strconv.Quote(s)
}

func parseShift(s shiftFile, where string) (shift, error) {
	sh := shift{name: s.Name}
	switch {
	case s.Reference != "" && s.Practitioner != "":
		return sh, &RulesError{Where: where, Reason: "give either practitioner or reference, not both"}
	case s.Reference != "":
		if !refPattern.MatchString(s.Reference) {
			return sh, &RulesError{Where: where + ".reference", Reason: "must be Practitioner/id, PractitionerRole/id or CareTeam/id"}
		}
		sh.ref = s.Reference
	case s.Practitioner != "":
		sys, val, ok := strings.Cut(s.Practitioner, "|")
		if !ok || val == "" || strings.Contains(val, "|") {
			return sh, &RulesError{Where: where + ".practitioner", Reason: `must be an identifier "system|value" (XCN-9 as mapped, XCN-1), or "|value" when XCN-9 is empty`}
		}
		sh.system, sh.value = sys, val
	default:
		return sh, &RulesError{Where: where, Reason: "needs a practitioner (system|value) or a reference"}
	}
	if len(s.Days) == 0 {
		sh.days = [7]bool{true, true, true, true, true, true, true}
	}
	for _, d := range s.Days {
		k := slices.Index(weekdays, strings.ToLower(d))
		if k < 0 {
			return sh, &RulesError{Where: where + ".days", Reason: fmt.Sprintf("%s is not a day (use sun, mon, tue, wed, thu, fri, sat)", clip(d))}
		}
		sh.days[k] = true
	}
	var err error
	if s.From == "" && s.To == "" {
		sh.from, sh.to = 0, 0 // all day
		return sh, nil
	}
	if sh.from, err = clock(s.From); err != nil {
		return sh, &RulesError{Where: where + ".from", Reason: err.Error()}
	}
	if sh.to, err = clock(s.To); err != nil {
		return sh, &RulesError{Where: where + ".to", Reason: err.Error()}
	}
	return sh, nil
}

// clock reads "HH:MM" as minutes after midnight.
func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%s is not a time of day (want HH:MM, 24-hour)", clip(s))
	}
	return t.Hour()*60 + t.Minute(), nil
}

func (r *Rules) parseRule(i int, rf ruleFile) (*rule, error) {
	where := fmt.Sprintf("rule %d", i+1)
	if !namePattern.MatchString(rf.Name) {
		return nil, &RulesError{Where: where + ".name", Reason: "every rule needs a name of lower-case letters, digits, - and _ (at most 64)"}
	}
	where += " (" + rf.Name + ")"
	ru := &rule{name: rf.Name, category: "notification", priority: PriorityRoutine}
	for _, t := range rf.When.Trigger {
		if !triggerPattern.MatchString(t) {
			return nil, &RulesError{Where: where + " when.trigger", Reason: fmt.Sprintf("%s is not a trigger like ADT^A01 or ORU^*", clip(t))}
		}
	}
	ru.triggers = rf.When.Trigger
	ru.classes, ru.units, ru.facilities = rf.When.PatientClass, rf.When.Unit, rf.When.SendingFacility
	ru.orderCodes, ru.orderControls = rf.When.OrderCode, rf.When.OrderControl
	ru.resultCodes, ru.interpretations = rf.When.ResultCode, rf.When.Interpretation
	for _, p := range rf.When.OrderPriority {
		pr, ok := ParsePriority(p)
		if !ok {
			return nil, &RulesError{Where: where + " when.order_priority", Reason: fmt.Sprintf("%s is not routine, urgent, asap or stat", clip(p))}
		}
		ru.orderPriorities = append(ru.orderPriorities, pr)
	}
	if rf.Priority != "" {
		pr, ok := ParsePriority(rf.Priority)
		if !ok {
			return nil, &RulesError{Where: where + " priority", Reason: fmt.Sprintf("%s is not routine, urgent, asap or stat", clip(rf.Priority))}
		}
		ru.priority = pr
	}
	switch rf.EscalateAfter {
	case "":
	case "never":
		ru.escalateAfter = -1
	default:
		d, err := time.ParseDuration(rf.EscalateAfter)
		if err != nil || d < 30*time.Second || d > 24*time.Hour {
			return nil, &RulesError{Where: where + " escalate_after", Reason: fmt.Sprintf("%s is not a duration from 30s to 24h (such as 5m), or never", clip(rf.EscalateAfter))}
		}
		ru.escalateAfter = d
	}
	if rf.Category != "" {
		if !slices.Contains(categories, rf.Category) {
			return nil, &RulesError{Where: where + " category", Reason: fmt.Sprintf("%s is not alert, notification, reminder or instruction", clip(rf.Category))}
		}
		ru.category = rf.Category
	}
	if len(rf.Notify) == 0 {
		return nil, &RulesError{Where: where + " notify", Reason: "a rule must name at least one recipient source"}
	}
	for _, n := range rf.Notify {
		s, err := r.parseSource(n)
		if err != nil {
			return nil, &RulesError{Where: where + " notify", Reason: err.Error()}
		}
		ru.notify = append(ru.notify, s)
	}
	if strings.TrimSpace(rf.Template) == "" {
		return nil, &RulesError{Where: where + " template", Reason: "a rule needs a template for the message text"}
	}
	if len(rf.Template) > MaxTemplateBytes {
		return nil, &RulesError{Where: where + " template", Reason: fmt.Sprintf("%d bytes; the limit is %d", len(rf.Template), MaxTemplateBytes)}
	}
	tmpl, err := template.New(rf.Name).Option("missingkey=error").Funcs(templateFuncs).Parse(rf.Template)
	if err != nil {
		return nil, &RulesError{Where: where + " template", Reason: err.Error()}
	}
	if err := checkTemplate(tmpl); err != nil {
		return nil, &RulesError{Where: where + " template", Reason: err.Error()}
	}
	// Try it on an empty message, so field-name typos fail at load time.
	if err := tmpl.Execute(io.Discard, &Message{}); err != nil {
		return nil, &RulesError{Where: where + " template", Reason: err.Error()}
	}
	ru.tmpl = tmpl
	return ru, nil
}

var roles = []Role{RoleAttending, RoleReferring, RoleConsulting, RoleAdmitting, RoleOrdering, RolePrimaryCare}

func (r *Rules) parseSource(n string) (source, error) {
	if slices.Contains(roles, Role(n)) {
		return source{kind: sourceRole, role: Role(n)}, nil
	}
	switch {
	case n == "on_call":
		return source{kind: sourceOnCall}, nil
	case n == "care_team":
		return source{kind: sourceUnitTeams}, nil
	case strings.HasPrefix(n, "care_team:"):
		id := strings.TrimPrefix(n, "care_team:")
		if !slices.ContainsFunc(r.teams, func(t careTeam) bool { return t.id == id }) {
			return source{}, fmt.Errorf("care team %s is not defined under care_teams", clip(id))
		}
		return source{kind: sourceTeam, team: id}, nil
	case strings.HasPrefix(n, "practitioner:"):
		sh, err := parseShift(shiftFile{Practitioner: strings.TrimPrefix(n, "practitioner:")}, "")
		if err != nil {
			return source{}, fmt.Errorf(`%s: want practitioner:system|value`, clip(n))
		}
		return source{kind: sourceFixed, fixed: sh}, nil
	case strings.HasPrefix(n, "reference:"):
		ref := strings.TrimPrefix(n, "reference:")
		if !refPattern.MatchString(ref) {
			return source{}, fmt.Errorf("%s: want reference:Practitioner/id, PractitionerRole/id or CareTeam/id", clip(n))
		}
		return source{kind: sourceFixed, fixed: shift{ref: ref}}, nil
	}
	return source{}, fmt.Errorf("%s is not a recipient source (attending, admitting, referring, consulting, ordering, primary-care, on_call, care_team, care_team:ID, practitioner:SYSTEM|VALUE, reference:TYPE/ID)", clip(n))
}

var templateFuncs = template.FuncMap{
	"join":  strings.Join,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	// printf is the builtin with a cap on widths and precisions, so that
	// "%999999999d" cannot make a gigabyte.
	"printf": func(format string, args ...any) (string, error) {
		if bigVerbWidth.MatchString(format) {
			return "", errors.New("printf widths and precisions above 99 are not allowed")
		}
		return fmt.Sprintf(format, args...), nil
	},
}

var bigVerbWidth = regexp.MustCompile(`%[-+# 0]*[0-9]{3,}|\.[0-9]{3,}|\*`)

// checkTemplate keeps a rule's template to what runs in bounded time: no
// define/template/block (recursion), and range only over the message's
// lists, never over a number.
func checkTemplate(t *template.Template) error {
	if len(t.Templates()) > 1 {
		return errors.New("define and block are not allowed in a rule template")
	}
	var walk func(n parse.Node) error
	walk = func(n parse.Node) error {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return nil
			}
			for _, c := range n.Nodes {
				if err := walk(c); err != nil {
					return err
				}
			}
		case *parse.TemplateNode:
			return errors.New("{{template}} is not allowed in a rule template")
		case *parse.RangeNode:
			if p := n.Pipe; p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
				return errors.New("range takes one list of the message, such as .Results")
			}
			switch n.Pipe.Cmds[0].Args[0].(type) {
			case *parse.FieldNode, *parse.ChainNode, *parse.VariableNode:
			default:
				return errors.New("range takes one list of the message, such as .Results")
			}
			if err := walk(n.List); err != nil {
				return err
			}
			return walk(n.ElseList)
		case *parse.IfNode:
			if err := walk(n.List); err != nil {
				return err
			}
			return walk(n.ElseList)
		case *parse.WithNode:
			if err := walk(n.List); err != nil {
				return err
			}
			return walk(n.ElseList)
		}
		return nil
	}
	return walk(t.Tree.Root)
}

// active reports whether the shift covers t (in the rules' time zone). A
// shift that wraps midnight belongs to the day it starts.
func (s shift) active(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	switch {
	case s.from == s.to: // all day
		return s.days[day]
	case s.from < s.to:
		return s.days[day] && m >= s.from && m < s.to
	case m >= s.from:
		return s.days[day]
	case m < s.to:
		return s.days[(day+6)%7]
	}
	return false
}
