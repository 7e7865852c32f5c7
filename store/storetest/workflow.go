package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

// testWorkflow: what the clinician workflow needs of a store. The
// subtests share the store, each with recipients of its own.
func testWorkflow(t *testing.T, st store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"RecallLeavesInbox", testRecallLeavesInbox},
		{"RecallEndsEscalation", testRecallEndsEscalation},
		{"EnteredInErrorNotDue", testRecalledEscalationNotDue},
		{"VersionMethods", testVersionMethods},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, st) })
	}
}

// inboxIDs are the ids of a recipient's inbox, newest first.
func inboxIDs(t *testing.T, st store.Store, recipient string) []string {
	t.Helper()
	es, err := st.Inbox(context.Background(), recipient, 50)
	if err != nil {
		t.Fatalf("Inbox(%s): %v", recipient, err)
	}
	out := []string{}
	for _, e := range es {
		out = append(out, e.Communication.ID)
	}
	return out
}

// waitingIDs are the ids of a recipient's undelivered Communications,
// oldest first.
func waitingIDs(t *testing.T, st store.Store, recipient string) []string {
	t.Helper()
	es, err := st.Waiting(context.Background(), recipient, 50)
	if err != nil {
		t.Fatalf("Waiting(%s): %v", recipient, err)
	}
	out := []string{}
	for _, e := range es {
		out = append(out, e.Communication.ID)
	}
	return out
}

func unread(t *testing.T, st store.Store, recipient string) int {
	t.Helper()
	n, err := st.Unread(context.Background(), recipient)
	if err != nil {
		t.Fatalf("Unread(%s): %v", recipient, err)
	}
	return n
}

// recalled is the next version of c, recalled by its sender: status
// entered-in-error.
func recalled(c store.CommunicationRow, at time.Time) store.CommunicationRow {
	c.Status, c.Sealed, c.Updated = store.StatusEnteredInError, []byte("recalled "+c.ID), at
	return c
}

// testRecallLeavesInbox: a Communication its sender recalls
// (entered-in-error) leaves every recipient's inbox, undelivered list and
// unread count, also for a recipient the recall itself adds; it is still
// read and found by search, and completing it (a recipient reading it)
// neither completes it nor makes a version.
func testRecallLeavesInbox(t *testing.T, st store.Store) {
	ctx := context.Background()
	gone, kept := apiRow("recall-gone"), apiRow("recall-kept")
	kept.Sent = gone.Sent.Add(time.Minute)
	mine := []string{"Practitioner/recall-a", "CareTeam/recall-icu"}
	gone.Recipients, kept.Recipients = mine, mine
	for _, r := range []store.CommunicationRow{gone, kept} {
		if err := st.CreateCommunication(ctx, r); err != nil {
			t.Fatalf("CreateCommunication(%s): %v", r.ID, err)
		}
	}
	for _, r := range mine {
		if got, want := inboxIDs(t, st, r), []string{kept.ID, gone.ID}; !reflect.DeepEqual(got, want) {
			t.Fatalf("inbox of %s before the recall = %v, want %v", r, got, want)
		}
	}
	if got, want := waitingIDs(t, st, mine[0]), []string{gone.ID, kept.ID}; !reflect.DeepEqual(got, want) {
		t.Fatalf("waiting before the recall = %v, want %v", got, want)
	}
	if n := unread(t, st, mine[0]); n != 2 {
		t.Fatalf("unread before the recall = %d, want 2", n)
	}

	rc := recalled(gone, gone.Updated.Add(time.Minute))
	rc.Recipients = append(slices.Clone(mine), "Practitioner/recall-late")
	if v, err := st.UpdateCommunication(ctx, rc, 1); err != nil || v != 2 {
		t.Fatalf("recalling: %d, %v; want version 2", v, err)
	}
	for _, r := range mine {
		if got, want := inboxIDs(t, st, r), []string{kept.ID}; !reflect.DeepEqual(got, want) {
			t.Errorf("inbox of %s after the recall = %v, want %v", r, got, want)
		}
		if got, want := waitingIDs(t, st, r), []string{kept.ID}; !reflect.DeepEqual(got, want) {
			t.Errorf("waiting of %s after the recall = %v, want %v", r, got, want)
		}
		if n := unread(t, st, r); n != 1 {
			t.Errorf("unread of %s after the recall = %d, want 1", r, n)
		}
	}
	if got := inboxIDs(t, st, "Practitioner/recall-late"); len(got) != 0 {
		t.Errorf("the inbox of a recipient the recall added = %v, want empty", got)
	}
	if got := waitingIDs(t, st, "Practitioner/recall-late"); len(got) != 0 {
		t.Errorf("waiting of a recipient the recall added = %v, want empty", got)
	}

	if got := mustRead(t, st, gone.ID); got.Status != store.StatusEnteredInError || got.Version != 2 {
		t.Errorf("the recalled Communication reads as %s version %d, want entered-in-error version 2", got.Status, got.Version)
	}
	q := store.CommunicationQuery{Recipient: store.TokenMatch{Any: []string{mine[0]}}, Limit: store.MaxSearchPage}
	got := ids(search(t, st, q))
	slices.Sort(got)
	if !reflect.DeepEqual(got, []string{gone.ID, kept.ID}) {
		t.Errorf("search by recipient after the recall = %v, want both (a search still finds it)", got)
	}

	if done, err := st.CompleteCommunication(ctx, gone.ID, []byte("read")); err != nil || done {
		t.Errorf("completing the recalled Communication: %v, %v; want not done", done, err)
	}
	if done, err := st.CompleteCommunication(ctx, kept.ID, []byte("read")); err != nil || !done {
		t.Errorf("completing the other: %v, %v; want done", done, err)
	}
	if got := mustRead(t, st, gone.ID); got.Status != store.StatusEnteredInError || got.Version != 2 || string(got.Sealed) != "recalled "+gone.ID {
		t.Errorf("after completing it: %s version %d %q; want it recalled as it was", got.Status, got.Version, got.Sealed)
	}
	if h, err := st.CommunicationHistory(ctx, gone.ID); err != nil || !reflect.DeepEqual(versions(h), []int{2, 1}) {
		t.Errorf("history after completing it = %v, %v; want [2 1]", versions(h), err)
	}
}

// testRecallEndsEscalation: the pending escalation of a recalled
// Communication is never due again; another one still is.
func testRecallEndsEscalation(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	for _, in := range []string{"in-recall-esc", "in-kept-esc"} {
		m := mappedOf(in, at, []byte("p"))
		m.Events = nil
		m.Escalations = []store.Escalation{{CommunicationID: "c-" + in, Unit: "ICU", DueAt: at.Add(5 * time.Minute), Every: 5 * time.Minute}}
		if _, err := st.StoreMapped(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	due, err := st.DueEscalations(ctx, at.Add(5*time.Minute), 10)
	if err != nil || len(due) != 2 {
		t.Fatalf("due before the recall: %+v, %v; want both", due, err)
	}
	cur := mustRead(t, st, "c-in-recall-esc")
	if _, err := st.UpdateCommunication(ctx, recalled(cur, at.Add(time.Minute)), 1); err != nil {
		t.Fatalf("recalling: %v", err)
	}
	for _, now := range []time.Time{at.Add(5 * time.Minute), at.Add(24 * time.Hour)} {
		due, err := st.DueEscalations(ctx, now, 10)
		if err != nil || len(due) != 1 || due[0].CommunicationID != "c-in-kept-esc" {
			t.Errorf("due at %v after the recall: %+v, %v; want only c-in-kept-esc", now, due, err)
		}
	}
}

// testRecalledEscalationNotDue: an escalation whose Communication became
// entered-in-error by any write (here one the pipeline stores so) is not
// due: DueEscalations itself passes it over.
func testRecalledEscalationNotDue(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	m := mappedOf("in-error-esc", at, []byte("p"))
	m.Events = nil
	m.Communications[0].Status = store.StatusEnteredInError
	m.Communications[0].Recipients = []string{"Practitioner/error-a"}
	m.Escalations = []store.Escalation{{CommunicationID: "c-in-error-esc", Unit: "ICU", DueAt: at.Add(time.Minute), Every: time.Minute}}
	if _, err := st.StoreMapped(ctx, m); err != nil {
		t.Fatal(err)
	}
	due, err := st.DueEscalations(ctx, at.Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range due {
		if e.CommunicationID == "c-in-error-esc" {
			t.Errorf("due: %+v; want none for an entered-in-error Communication", due)
		}
	}
	if got := inboxIDs(t, st, "Practitioner/error-a"); len(got) != 0 {
		t.Errorf("inbox of its recipient = %v, want empty", got)
	}
}

// methods are the versions of a history and how each was written.
func methods(vs []store.Version) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, string(v.Method)+" "+string(rune('0'+v.Version)))
	}
	return out
}

// testVersionMethods: a Communication's history tells how each version was
// written: version 1 by POST (CreateCommunication, the pipeline) or by PUT
// (PutCommunication, update as create), later ones by PUT; the rows are
// those of CommunicationHistory.
func testVersionMethods(t *testing.T, st store.Store) {
	ctx := context.Background()
	posted, put := apiRow("posted"), apiRow("put")
	if err := st.CreateCommunication(ctx, posted); err != nil {
		t.Fatal(err)
	}
	if err := st.PutCommunication(ctx, put); err != nil {
		t.Fatalf("PutCommunication: %v", err)
	}
	again := put
	again.Identifier = "urn:uuid:put-again"
	if err := st.PutCommunication(ctx, again); !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutCommunication of an id that exists: %v, want ErrConflict", err)
	}
	m := mappedOf("in-methods", time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC), []byte("p"))
	m.Events = nil
	if _, err := st.StoreMapped(ctx, m); err != nil {
		t.Fatal(err)
	}
	check := func(id string, want ...string) {
		t.Helper()
		vs, err := st.CommunicationVersions(ctx, id)
		if err != nil || !reflect.DeepEqual(methods(vs), want) {
			t.Fatalf("CommunicationVersions(%s) = %v, %v; want %v", id, methods(vs), err, want)
		}
		h, err := st.CommunicationHistory(ctx, id)
		if err != nil || len(h) != len(vs) {
			t.Fatalf("CommunicationHistory(%s): %d rows, %v", id, len(h), err)
		}
		for i := range h {
			sameRow(t, "version "+string(rune('0'+h[i].Version))+" of "+id, vs[i].CommunicationRow, h[i])
		}
	}
	check(posted.ID, "POST 1")
	check(put.ID, "PUT 1")
	check("c-in-methods", "POST 1")
	for _, r := range []store.CommunicationRow{posted, put} {
		next := r
		next.Status, next.Sealed, next.Updated = "completed", []byte("v2"), r.Updated.Add(time.Minute)
		if _, err := st.UpdateCommunication(ctx, next, 1); err != nil {
			t.Fatal(err)
		}
	}
	if done, err := st.CompleteCommunication(ctx, "c-in-methods", []byte("read")); err != nil || !done {
		t.Fatalf("completing: %v, %v", done, err)
	}
	check(posted.ID, "PUT 2", "POST 1")
	check(put.ID, "PUT 2", "PUT 1")
	check("c-in-methods", "PUT 2", "POST 1")
	if _, err := st.CommunicationVersions(ctx, "api-nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CommunicationVersions of an unknown id: %v, want ErrNotFound", err)
	}
}
