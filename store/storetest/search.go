package storetest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

// searchT0 is the middle of the search data set's times, which are a
// microsecond apart where they matter.
var searchT0 = time.Date(2026, 11, 3, 14, 30, 0, 123456000, time.UTC)

// Token systems of the search data set.
const (
	sourceSystem   = "urn:carebridge:communication-source"
	categorySystem = "http://terminology.hl7.org/CodeSystem/communication-category"
	orderSystem    = "urn:oid:2.16.840.1.113883.19.5"
)

// searchRows are the Communications the search tests find, stored in
// three Mapped (in an order that is no order the searches sort by). Each
// has its identifier and category as tokens; some have more (a second
// identifier, a category coding of another system, references), a
// sender, or a time received.
func searchRows() [][]store.CommunicationRow {
	const us = time.Microsecond
	t0 := searchT0
	sender := map[string]string{"c-01": "Practitioner/a", "c-02": "Practitioner/a", "c-05": "Device/bridge"}
	received := map[string]time.Time{"c-03": t0, "c-08": t0.Add(us), "c-11": t0.Add(time.Hour)}
	more := map[string][]store.IndexToken{
		"c-02": {{Param: store.TokenIdentifier, System: orderSystem, Code: "ORD-2"}},
		"c-06": {{Param: store.TokenIdentifier, System: orderSystem, Code: "ORD-6"}},
		"c-09": {{Param: store.TokenIdentifier, System: "urn:other", Code: "GH^c-05"}, {Param: store.TokenPartOf, Code: "Procedure/x"}},
		"c-04": {{Param: store.TokenCategory, System: "urn:local", Code: "alert"}},
		"c-05": {{Param: store.TokenPartOf, Code: "Observation/o1"}},
		"c-10": {{Param: store.TokenInResponseTo, Code: "Communication/c-07"}},
	}
	row := func(id, status, priority, category, subject, encounter string, sent time.Time, recipients ...string) store.CommunicationRow {
		return store.CommunicationRow{
			ID: id, Identifier: "GH^" + id, Status: status, Priority: priority, Category: category,
			Subject: subject, Encounter: encounter, Recipients: append([]string{}, recipients...), Sent: sent, Sealed: []byte("sealed " + id),
			Sender: sender[id], Received: received[id],
			Tokens: append([]store.IndexToken{
				{Param: store.TokenIdentifier, System: sourceSystem, Code: "GH^" + id},
				{Param: store.TokenCategory, System: categorySystem, Code: category},
			}, more[id]...),
		}
	}
	return [][]store.CommunicationRow{{
		row("c-07", "in-progress", "urgent", "notification", "Patient/p3", "", t0.Add(time.Hour), "CareTeam/icu"),
		row("c-03", "completed", "stat", "alert", "Patient/p2", "Encounter/e2", t0.Add(us), "CareTeam/icu"),
		row("c-10", "in-progress", "stat", "notification", "Patient/p1", "", t0.Add(time.Hour), "Practitioner/c"),
		row("c-11", "completed", "stat", "alert", "Patient/p2", "Encounter/e2", t0.Add(time.Hour), "CareTeam/icu", "Practitioner/c"),
	}, {
		row("c-01", "in-progress", "routine", "notification", "Patient/p1", "Encounter/e1", t0, "Practitioner/a"),
		row("c-08", "completed", "routine", "alert", "Patient/p4", "Encounter/e4", t0.Add(time.Hour), "Practitioner/c"),
		row("c-05", "in-progress", "stat", "alert", "Patient/p3", "Encounter/e3", t0.Add(-time.Hour), "Practitioner/b"),
		row("c-04", "completed", "asap", "reminder", "Patient/p2", "", t0.Add(2*time.Second)),
	}, {
		row("c-09", "in-progress", "asap", "alert", "Patient/p4", "Encounter/e4", t0.Add(-us), "Practitioner/a"),
		row("c-02", "in-progress", "urgent", "alert", "Patient/p1", "", t0.Add(us), "Practitioner/a", "CareTeam/icu"),
		row("c-06", "stopped", "routine", "instruction", "Patient/p1", "Encounter/e1", t0.Add(us), "Practitioner/b", "Practitioner/a"),
	}}
}

// seedSearch stores searchRows, and a delivery of c-05 to a recipient
// it does not name (as an escalation adds): recipients are found by
// their deliveries. It returns the rows as they read back.
func seedSearch(t *testing.T, st store.Store) map[string]store.CommunicationRow {
	t.Helper()
	ctx := context.Background()
	byID := map[string]store.CommunicationRow{}
	for i, rows := range searchRows() {
		m := store.Mapped{InboundID: fmt.Sprintf("search-%d", i), MappedAt: searchT0, Outcome: []byte("outcome"), Communications: rows}
		if ok, err := st.StoreMapped(ctx, m); err != nil || !ok {
			t.Fatalf("StoreMapped(%s) = %v, %v", m.InboundID, ok, err)
		}
		for _, c := range rows {
			byID[c.ID] = asRead(c, 1)
		}
	}
	if err := st.QueueDeliveries(ctx, "c-05", []string{"Practitioner/oncall"}, searchT0); err != nil {
		t.Fatal(err)
	}
	return byID
}

func ids(rows []store.CommunicationRow) []string {
	out := []string{}
	for _, c := range rows {
		out = append(out, c.ID)
	}
	return out
}

// cs names Communications c-NN.
func cs(ns ...int) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, fmt.Sprintf("c-%02d", n))
	}
	return out
}

func search(t *testing.T, st store.Store, q store.CommunicationQuery) []store.CommunicationRow {
	t.Helper()
	got, err := st.SearchCommunications(context.Background(), q)
	if err != nil {
		t.Fatalf("SearchCommunications(%+v): %v", q, err)
	}
	return got
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// testSearchConstraints: each kind of constraint, alone and together;
// the count of a query is the length of its whole result, whatever the
// page.
func testSearchConstraints(t *testing.T, st store.Store) {
	byID := seedSearch(t, st)
	t0, us := searchT0, time.Microsecond
	in := func(vs ...string) store.TokenMatch { return store.TokenMatch{Any: vs} }
	not := func(vs ...string) store.TokenMatch { return store.TokenMatch{Not: vs} }
	sent := func(op store.Comparator, at time.Time, more ...store.TimeBound) []store.TimeBound {
		return append([]store.TimeBound{{Op: op, At: at}}, more...)
	}
	and := func(op store.Comparator, at time.Time) store.TimeBound { return store.TimeBound{Op: op, At: at} }
	tokens := func(fs ...store.TokenFilter) store.CommunicationQuery { return store.CommunicationQuery{Tokens: fs} }
	anyOf := func(param string, vs ...store.TokenValue) store.TokenFilter {
		return store.TokenFilter{Param: param, Any: vs}
	}
	coding := func(system, code string) store.TokenValue { return store.TokenValue{System: system, Code: code} }
	for _, tc := range []struct {
		name string
		q    store.CommunicationQuery
		want []string // in id order
	}{
		{"nothing", store.CommunicationQuery{}, cs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)},
		{"id any", store.CommunicationQuery{ID: in("c-03", "c-07", "c-99")}, cs(3, 7)},
		{"id not", store.CommunicationQuery{ID: not(cs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)...)}, cs(11)},
		{"status any one", store.CommunicationQuery{Status: in("completed")}, cs(3, 4, 8, 11)},
		{"status any two", store.CommunicationQuery{Status: in("completed", "stopped")}, cs(3, 4, 6, 8, 11)},
		{"status not", store.CommunicationQuery{Status: not("in-progress")}, cs(3, 4, 6, 8, 11)},
		{"status any and not", store.CommunicationQuery{Status: store.TokenMatch{Any: []string{"in-progress", "completed"}, Not: []string{"completed"}}}, cs(1, 2, 5, 7, 9, 10)},
		{"status none", store.CommunicationQuery{Status: in("entered-in-error")}, cs()},
		{"priority any", store.CommunicationQuery{Priority: in("stat", "asap")}, cs(3, 4, 5, 9, 10, 11)},
		{"priority not", store.CommunicationQuery{Priority: not("routine", "urgent")}, cs(3, 4, 5, 9, 10, 11)},
		{"subject any", store.CommunicationQuery{Subject: in("Patient/p1")}, cs(1, 2, 6, 10)},
		{"subject not", store.CommunicationQuery{Subject: not("Patient/p1", "Patient/p2")}, cs(5, 7, 8, 9)},
		{"encounter missing", store.CommunicationQuery{Encounter: store.TokenMatch{Missing: yes()}}, cs(2, 4, 7, 10)},
		{"encounter not missing", store.CommunicationQuery{Encounter: store.TokenMatch{Missing: no()}}, cs(1, 3, 5, 6, 8, 9, 11)},
		{"encounter any", store.CommunicationQuery{Encounter: in("Encounter/e1")}, cs(1, 6)},
		{"encounter not missing, not e4", store.CommunicationQuery{Encounter: store.TokenMatch{Not: []string{"Encounter/e4"}, Missing: no()}}, cs(1, 3, 5, 6, 11)},
		{"encounter not e4", store.CommunicationQuery{Encounter: not("Encounter/e4")}, cs(1, 2, 3, 4, 5, 6, 7, 10, 11)},
		{"recipient any", store.CommunicationQuery{Recipient: in("Practitioner/a")}, cs(1, 2, 6, 9)},
		{"recipient any two", store.CommunicationQuery{Recipient: in("CareTeam/icu", "Practitioner/c")}, cs(2, 3, 7, 8, 10, 11)},
		{"recipient by delivery only", store.CommunicationQuery{Recipient: in("Practitioner/oncall")}, cs(5)},
		{"recipient missing", store.CommunicationQuery{Recipient: store.TokenMatch{Missing: yes()}}, cs(4)},
		{"recipient not missing", store.CommunicationQuery{Recipient: store.TokenMatch{Missing: no()}}, cs(1, 2, 3, 5, 6, 7, 8, 9, 10, 11)},
		{"recipient not", store.CommunicationQuery{Recipient: not("Practitioner/a", "CareTeam/icu")}, cs(4, 5, 8, 10)},
		{"recipient any and not", store.CommunicationQuery{Recipient: store.TokenMatch{Any: []string{"Practitioner/b"}, Not: []string{"Practitioner/a"}}}, cs(5)},
		{"sent ge", store.CommunicationQuery{Sent: sent(store.GE, t0.Add(us))}, cs(2, 3, 4, 6, 7, 8, 10, 11)},
		{"sent gt", store.CommunicationQuery{Sent: sent(store.GT, t0.Add(us))}, cs(4, 7, 8, 10, 11)},
		{"sent le", store.CommunicationQuery{Sent: sent(store.LE, t0)}, cs(1, 5, 9)},
		{"sent lt a microsecond later", store.CommunicationQuery{Sent: sent(store.LT, t0.Add(us))}, cs(1, 5, 9)},
		{"sent lt", store.CommunicationQuery{Sent: sent(store.LT, t0)}, cs(5, 9)},
		{"sent ge and le", store.CommunicationQuery{Sent: sent(store.GE, t0, and(store.LE, t0.Add(us)))}, cs(1, 2, 3, 6)},
		{"sent gt and lt", store.CommunicationQuery{Sent: sent(store.GT, t0.Add(-us), and(store.LT, t0.Add(us)))}, cs(1)},
		{"sent gt and lt, empty", store.CommunicationQuery{Sent: sent(store.GT, t0, and(store.LT, t0.Add(us)))}, cs()},
		{"sent ge in another zone", store.CommunicationQuery{Sent: sent(store.GE, t0.Add(us).In(time.FixedZone("EST", -5*3600)))}, cs(2, 3, 4, 6, 7, 8, 10, 11)},
		{"sent after all", store.CommunicationQuery{Sent: sent(store.GE, t0.Add(2*time.Hour))}, cs()},
		{"identifier system and code", tokens(anyOf(store.TokenIdentifier, coding(sourceSystem, "GH^c-05"))), cs(5)},
		{"identifier code in any system", tokens(anyOf(store.TokenIdentifier, store.TokenValue{Code: "GH^c-05", AnySystem: true})), cs(5, 9)},
		{"identifier system with any code", tokens(anyOf(store.TokenIdentifier, store.TokenValue{System: orderSystem, AnyCode: true})), cs(2, 6)},
		{"identifier system with the empty code", tokens(anyOf(store.TokenIdentifier, coding(orderSystem, ""))), cs()},
		{"identifier any of two", tokens(anyOf(store.TokenIdentifier, coding(sourceSystem, "GH^c-01"), coding(orderSystem, "ORD-6"))), cs(1, 6)},
		{"identifier in the wrong system", tokens(anyOf(store.TokenIdentifier, coding(orderSystem, "GH^c-05"))), cs()},
		{"second identifier", tokens(anyOf(store.TokenIdentifier, coding(orderSystem, "ORD-2"))), cs(2)},
		{"both identifiers of one", tokens(
			anyOf(store.TokenIdentifier, coding(sourceSystem, "GH^c-02")), anyOf(store.TokenIdentifier, coding(orderSystem, "ORD-2"))), cs(2)},
		{"identifiers of two, ANDed", tokens(
			anyOf(store.TokenIdentifier, coding(sourceSystem, "GH^c-02")), anyOf(store.TokenIdentifier, coding(orderSystem, "ORD-6"))), cs()},
		{"category two codes", tokens(anyOf(store.TokenCategory, coding(categorySystem, "reminder"), coding(categorySystem, "instruction"))), cs(4, 6)},
		{"category code in any system", tokens(anyOf(store.TokenCategory, store.TokenValue{Code: "alert", AnySystem: true})), cs(2, 3, 4, 5, 8, 9, 11)},
		{"category code and system", tokens(anyOf(store.TokenCategory, coding(categorySystem, "alert"))), cs(2, 3, 5, 8, 9, 11)},
		{"category not, any system", tokens(store.TokenFilter{Param: store.TokenCategory, Not: []store.TokenValue{{Code: "alert", AnySystem: true}}}), cs(1, 6, 7, 10)},
		{"category not, with system", tokens(store.TokenFilter{Param: store.TokenCategory, Not: []store.TokenValue{coding(categorySystem, "alert")}}), cs(1, 4, 6, 7, 10)},
		{"category not two", tokens(store.TokenFilter{Param: store.TokenCategory, Not: []store.TokenValue{coding(categorySystem, "alert"), coding(categorySystem, "notification")}}), cs(4, 6)},
		{"category any and not", tokens(store.TokenFilter{
			Param: store.TokenCategory, Any: []store.TokenValue{{Code: "alert", AnySystem: true}}, Not: []store.TokenValue{{System: "urn:local", AnyCode: true}},
		}), cs(2, 3, 5, 8, 9, 11)},
		{"part-of reference", tokens(anyOf(store.TokenPartOf, coding("", "Observation/o1"))), cs(5)},
		{"part-of any value", tokens(anyOf(store.TokenPartOf, store.TokenValue{AnySystem: true, AnyCode: true})), cs(5, 9)},
		{"part-of missing", tokens(store.TokenFilter{Param: store.TokenPartOf, Missing: yes()}), cs(1, 2, 3, 4, 6, 7, 8, 10, 11)},
		{"part-of not missing", tokens(store.TokenFilter{Param: store.TokenPartOf, Missing: no()}), cs(5, 9)},
		{"part-of not missing, not o1", tokens(store.TokenFilter{Param: store.TokenPartOf, Missing: no(), Not: []store.TokenValue{coding("", "Observation/o1")}}), cs(9)},
		{"based-on missing", tokens(store.TokenFilter{Param: store.TokenBasedOn, Missing: yes()}), cs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)},
		{"in-response-to", tokens(anyOf(store.TokenInResponseTo, coding("", "Communication/c-07"))), cs(10)},
		{"a code of another param", tokens(anyOf(store.TokenPartOf, coding("", "Communication/c-07"))), cs()},
		{"filters of params ANDed", tokens(
			anyOf(store.TokenIdentifier, store.TokenValue{System: orderSystem, AnyCode: true}), anyOf(store.TokenCategory, coding(categorySystem, "alert"))), cs(2)},
		{"tokens and columns", store.CommunicationQuery{
			Tokens: []store.TokenFilter{anyOf(store.TokenCategory, coding(categorySystem, "alert"))}, Status: in("in-progress"),
		}, cs(2, 5, 9)},
		{"sender any", store.CommunicationQuery{Sender: in("Practitioner/a")}, cs(1, 2)},
		{"sender not", store.CommunicationQuery{Sender: not("Practitioner/a")}, cs(3, 4, 5, 6, 7, 8, 9, 10, 11)},
		{"sender missing", store.CommunicationQuery{Sender: store.TokenMatch{Missing: yes()}}, cs(3, 4, 6, 7, 8, 9, 10, 11)},
		{"sender not missing", store.CommunicationQuery{Sender: store.TokenMatch{Missing: no()}}, cs(1, 2, 5)},
		{"seen by a sender only", store.CommunicationQuery{SeenBy: []string{"Device/bridge"}}, cs(5)},
		{"seen by a recipient and a sender", store.CommunicationQuery{SeenBy: []string{"Practitioner/a", "Device/bridge"}}, cs(1, 2, 5, 6, 9)},
		{"seen by none", store.CommunicationQuery{SeenBy: []string{}}, cs()},
		{"seen by, one recipient (the inbox path)", store.CommunicationQuery{SeenBy: []string{"Device/bridge"}, Recipient: in("Practitioner/b")}, cs(5)},
		{"seen by, another recipient", store.CommunicationQuery{SeenBy: []string{"Device/bridge"}, Recipient: in("Practitioner/a")}, cs()},
		{"received ge", store.CommunicationQuery{Received: sent(store.GE, t0)}, cs(3, 8, 11)},
		{"received gt", store.CommunicationQuery{Received: sent(store.GT, t0)}, cs(8, 11)},
		{"received lt a microsecond later", store.CommunicationQuery{Received: sent(store.LT, t0.Add(us))}, cs(3)},
		{"received le", store.CommunicationQuery{Received: sent(store.LE, t0.Add(us))}, cs(3, 8)},
		{"received gt and le", store.CommunicationQuery{Received: sent(store.GT, t0, and(store.LE, t0.Add(time.Hour)))}, cs(8, 11)},
		{"received before all: none not received", store.CommunicationQuery{Received: sent(store.LT, t0.Add(24*time.Hour))}, cs(3, 8, 11)},
		{"received missing", store.CommunicationQuery{ReceivedMissing: yes()}, cs(1, 2, 4, 5, 6, 7, 9, 10)},
		{"received not missing", store.CommunicationQuery{ReceivedMissing: no()}, cs(3, 8, 11)},
		{"received not missing and gt", store.CommunicationQuery{ReceivedMissing: no(), Received: sent(store.GT, t0)}, cs(8, 11)},
		{"received missing and a bound", store.CommunicationQuery{ReceivedMissing: yes(), Received: sent(store.GT, t0)}, cs()},
		{"received and sent", store.CommunicationQuery{Received: sent(store.GE, t0), Sent: sent(store.LT, t0.Add(time.Hour))}, cs(3)},
		{"together", store.CommunicationQuery{
			Status: in("in-progress"), Priority: in("stat", "urgent"), Recipient: in("CareTeam/icu", "Practitioner/c"),
			Sent: sent(store.GE, t0),
		}, cs(2, 7, 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.Limit = store.MaxSearchPage
			got := search(t, st, q)
			if !reflect.DeepEqual(ids(got), tc.want) {
				t.Fatalf("SearchCommunications = %v, want %v", ids(got), tc.want)
			}
			for _, c := range got {
				if !reflect.DeepEqual(c, byID[c.ID]) {
					t.Errorf("row:\n got %+v\nwant %+v", c, byID[c.ID])
				}
			}
			// A count ignores the order and the page.
			q.Sort, q.Offset, q.Limit = store.SortBySentDesc, 2, 1
			n, err := st.CountCommunications(context.Background(), q)
			if err != nil || n != len(tc.want) {
				t.Fatalf("CountCommunications = %d, %v; want %d", n, err, len(tc.want))
			}
		})
	}
}

// searchOrders are searchRows in each order, ties broken as documented.
var searchOrders = []struct {
	name string
	sort store.CommunicationSort
	want []string
}{
	{"id", store.SortByID, cs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)},
	// Ties: c-02, c-03, c-06 at t0+1µs; c-07, c-08, c-10, c-11 at t0+1h.
	{"sent", store.SortBySent, cs(5, 9, 1, 2, 3, 6, 4, 7, 8, 10, 11)},
	{"sent desc", store.SortBySentDesc, cs(11, 10, 8, 7, 4, 6, 3, 2, 1, 9, 5)},
	// By rank, then newest first, then by id descending, as the sent
	// order is (c-10 and c-11: stat, t0+1h).
	{"priority", store.SortByPriority, cs(8, 6, 1, 7, 2, 4, 9, 11, 10, 3, 5)},
	{"priority desc", store.SortByPriorityDesc, cs(11, 10, 3, 5, 4, 9, 7, 2, 8, 6, 1)},
}

// testSearchOrder: every order, over everything and over a selection.
func testSearchOrder(t *testing.T, st store.Store) {
	seedSearch(t, st)
	for _, tc := range searchOrders {
		t.Run(tc.name, func(t *testing.T) {
			got := search(t, st, store.CommunicationQuery{Sort: tc.sort, Limit: store.MaxSearchPage})
			if !reflect.DeepEqual(ids(got), tc.want) {
				t.Fatalf("SearchCommunications = %v, want %v", ids(got), tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		q    store.CommunicationQuery
		want []string
	}{
		{"recipient by sent desc", store.CommunicationQuery{Recipient: store.TokenMatch{Any: []string{"CareTeam/icu"}}, Sort: store.SortBySentDesc}, cs(11, 7, 3, 2)},
		{"recipient and status by sent desc", store.CommunicationQuery{
			Recipient: store.TokenMatch{Any: []string{"Practitioner/a", "CareTeam/icu"}}, Status: store.TokenMatch{Any: []string{"in-progress"}},
			Sort: store.SortBySentDesc,
		}, cs(7, 2, 1, 9)},
		{"subject by sent", store.CommunicationQuery{Subject: store.TokenMatch{Any: []string{"Patient/p1"}}, Sort: store.SortBySent}, cs(1, 2, 6, 10)},
		{"status by priority desc", store.CommunicationQuery{Status: store.TokenMatch{Any: []string{"completed"}}, Sort: store.SortByPriorityDesc}, cs(11, 3, 4, 8)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.Limit = store.MaxSearchPage
			got := search(t, st, tc.q)
			if !reflect.DeepEqual(ids(got), tc.want) {
				t.Fatalf("SearchCommunications = %v, want %v", ids(got), tc.want)
			}
		})
	}
}

// testSearchPaging: pages of any size, in any order, add up to the whole
// result, each row once; Limit 0 returns nothing.
func testSearchPaging(t *testing.T, st store.Store) {
	ctx := context.Background()
	seedSearch(t, st)
	for _, tc := range searchOrders {
		for size := 1; size <= 4; size++ {
			t.Run(fmt.Sprintf("%s by %d", tc.name, size), func(t *testing.T) {
				var got []string
				for offset := 0; ; offset += size {
					page := search(t, st, store.CommunicationQuery{Sort: tc.sort, Offset: offset, Limit: size})
					if len(page) > size {
						t.Fatalf("page at %d: %d rows, more than the limit %d", offset, len(page), size)
					}
					got = append(got, ids(page)...)
					if len(page) < size {
						break
					}
					if len(got) > len(tc.want) {
						t.Fatalf("pages go on past the whole result: %v", got)
					}
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("pages = %v, want %v", got, tc.want)
				}
			})
		}
	}
	for _, tc := range []struct {
		name string
		q    store.CommunicationQuery
		want []string
	}{
		{"limit 0", store.CommunicationQuery{Limit: 0}, nil},
		{"negative limit", store.CommunicationQuery{Limit: -1}, nil},
		{"limit 0 with an offset", store.CommunicationQuery{Offset: 3}, nil},
		{"negative offset", store.CommunicationQuery{Offset: -5, Limit: 3}, cs(1, 2, 3)},
		{"offset past the end", store.CommunicationQuery{Offset: 11, Limit: 10}, nil},
		{"last page", store.CommunicationQuery{Sort: store.SortBySent, Offset: 9, Limit: 10}, cs(10, 11)},
		{"filtered page", store.CommunicationQuery{Status: store.TokenMatch{Any: []string{"in-progress"}}, Sort: store.SortBySentDesc, Offset: 1, Limit: 2}, cs(7, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := search(t, st, tc.q)
			if len(got) != len(tc.want) || (len(got) > 0 && !slices.Equal(ids(got), tc.want)) {
				t.Fatalf("SearchCommunications = %v, want %v", ids(got), tc.want)
			}
		})
	}
	n, err := st.CountCommunications(ctx, store.CommunicationQuery{Offset: 4})
	if err != nil || n != 11 {
		t.Fatalf("CountCommunications with an offset and no limit = %d, %v; want 11", n, err)
	}
	// An unknown comparator is an error, not a panic.
	bad := store.CommunicationQuery{Sent: []store.TimeBound{{Op: "~", At: searchT0}}, Limit: 10}
	if _, err := st.SearchCommunications(ctx, bad); err == nil {
		t.Error("SearchCommunications with an unknown comparator succeeded")
	}
	if _, err := st.CountCommunications(ctx, bad); err == nil {
		t.Error("CountCommunications with an unknown comparator succeeded")
	}
	bad = store.CommunicationQuery{Received: []store.TimeBound{{Op: "=", At: searchT0}}, Limit: 10}
	if _, err := st.SearchCommunications(ctx, bad); err == nil {
		t.Error("SearchCommunications with an unknown comparator of Received succeeded")
	}
	if _, err := st.CountCommunications(ctx, bad); err == nil {
		t.Error("CountCommunications with an unknown comparator of Received succeeded")
	}
}

// IndexedSearch is a Communication search that an index of both stores'
// schemas serves, and the index's name: what a plan test of each store
// checks its query planner uses.
type IndexedSearch struct {
	Query store.CommunicationQuery
	Index string
}

// IndexedSearches are the Communication searches whose index came late
// (migrations 26 and 27): a rare priority's (asap) open Communications,
// newest first, an encounter's (Encounter/e7), and all of them by
// priority in each order; a plan test's data names these values.
func IndexedSearches() []IndexedSearch {
	return []IndexedSearch{
		{store.CommunicationQuery{Priority: store.TokenMatch{Any: []string{"asap"}}, Status: store.TokenMatch{Any: []string{"in-progress"}},
			Sort: store.SortBySentDesc}, "communication_priority"},
		{store.CommunicationQuery{Encounter: store.TokenMatch{Any: []string{"Encounter/e7"}}, Sort: store.SortBySentDesc}, "communication_encounter"},
		{store.CommunicationQuery{Sort: store.SortByPriority}, "communication_rank"},
		{store.CommunicationQuery{Sort: store.SortByPriorityDesc}, "communication_rank_desc"},
	}
}
