package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
)

// asRead is c as a store reads it back as the given version: times in
// UTC to the microsecond, Updated (when zero) the time sent, recipients
// never nil, and Tokens not read.
func asRead(c store.CommunicationRow, version int) store.CommunicationRow {
	c.Version = version
	if c.Updated.IsZero() {
		c.Updated = c.Sent
	}
	c.Sent = c.Sent.UTC().Truncate(time.Microsecond)
	c.Updated = c.Updated.UTC().Truncate(time.Microsecond)
	if !c.Received.IsZero() {
		c.Received = c.Received.UTC().Truncate(time.Microsecond)
	}
	if c.Recipients == nil {
		c.Recipients = []string{}
	}
	c.Tokens = nil
	return c
}

// apiRow is a Communication as the API writes it, identified by name,
// with times that have nanoseconds and are not in UTC.
func apiRow(name string) store.CommunicationRow {
	zone := time.FixedZone("UTC-5", -5*3600)
	sent := time.Date(2026, 11, 3, 9, 30, 0, 123456789, zone)
	return store.CommunicationRow{
		ID: "api-" + name, Identifier: "urn:uuid:" + name, Status: "in-progress", Priority: "routine", Category: "notification",
		Subject: "Patient/p1", Encounter: "Encounter/e1", Sender: "Practitioner/s",
		Recipients: []string{"Practitioner/a", "CareTeam/icu"}, Sent: sent, Sealed: []byte("v1 of " + name),
		Updated: sent.Add(time.Second + 999),
		Tokens: []store.IndexToken{
			{Param: store.TokenIdentifier, System: sourceSystem, Code: "urn:uuid:" + name},
			{Param: store.TokenIdentifier, System: orderSystem, Code: "ORD-" + name},
			{Param: store.TokenCategory, System: categorySystem, Code: "notification"},
			{Param: store.TokenPartOf, Code: "Observation/o-" + name},
		},
	}
}

// byToken finds Communications by one token, in id order.
func byToken(t *testing.T, st store.Store, param, system, code string) []string {
	t.Helper()
	return ids(search(t, st, store.CommunicationQuery{
		Tokens: []store.TokenFilter{{Param: param, Any: []store.TokenValue{{System: system, Code: code}}}},
		Limit:  store.MaxSearchPage,
	}))
}

func mustRead(t *testing.T, st store.Store, id string) store.CommunicationRow {
	t.Helper()
	c, err := st.GetCommunication(context.Background(), id)
	if err != nil {
		t.Fatalf("GetCommunication(%s): %v", id, err)
	}
	return c
}

func sameRow(t *testing.T, what string, got, want store.CommunicationRow) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func versions(rows []store.CommunicationRow) []int {
	out := []int{}
	for _, c := range rows {
		out = append(out, c.Version)
	}
	return out
}

func textEvent(text string) store.Event {
	return store.Event{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte(text))}
}

// testCreateCommunication: a Communication created through the API is
// version 1, reads back as written (to the microsecond), has a queued
// delivery per recipient and is found by its tokens; an id or identifier
// that exists is a conflict that writes and publishes nothing.
func testCreateCommunication(t *testing.T, st store.Store) {
	ctx := context.Background()
	row := apiRow("create")
	row.Received = time.Date(2026, 11, 3, 20, 0, 1, 987654321, time.FixedZone("UTC+5:30", 5*3600+1800))
	row.Version = 7 // ignored: a new Communication is version 1
	ev := textEvent("created")
	if err := st.CreateCommunication(ctx, row, ev); err != nil {
		t.Fatalf("CreateCommunication: %v", err)
	}
	want := asRead(row, 1)
	if want.Updated != time.Date(2026, 11, 3, 14, 30, 1, 123457000, time.UTC) || want.Received != time.Date(2026, 11, 3, 14, 30, 1, 987654000, time.UTC) {
		t.Fatalf("asRead: Updated %v, Received %v", want.Updated, want.Received) // the test's own arithmetic
	}
	got := mustRead(t, st, row.ID)
	sameRow(t, "GetCommunication", got, want)
	for _, tm := range []time.Time{got.Sent, got.Received, got.Updated} {
		if tm.Location() != time.UTC {
			t.Errorf("time %v not in UTC", tm)
		}
	}
	v1, err := st.CommunicationVersion(ctx, row.ID, 1)
	if err != nil {
		t.Fatalf("CommunicationVersion(1): %v", err)
	}
	sameRow(t, "CommunicationVersion(1)", v1, want)
	history, err := st.CommunicationHistory(ctx, row.ID)
	if err != nil || len(history) != 1 {
		t.Fatalf("CommunicationHistory = %v, %v; want one version", versions(history), err)
	}
	sameRow(t, "history[0]", history[0], want)

	ds, err := st.DeliveriesOf(ctx, row.ID)
	if err != nil || len(ds) != 2 {
		t.Fatalf("DeliveriesOf = %+v, %v; want two", ds, err)
	}
	for _, d := range ds {
		if d.State != store.DeliveryQueued || !d.UpdatedAt.Equal(want.Updated) {
			t.Errorf("delivery to %s: %s at %v, want queued at %v", d.Recipient, d.State, d.UpdatedAt, want.Updated)
		}
	}
	for _, tok := range row.Tokens {
		if got := byToken(t, st, tok.Param, tok.System, tok.Code); !reflect.DeepEqual(got, []string{row.ID}) {
			t.Errorf("search by %s %s|%s = %v, want %s", tok.Param, tok.System, tok.Code, got, row.ID)
		}
	}

	// A conflict on the id, or on the identifier, writes nothing.
	sameID := apiRow("other")
	sameID.ID = row.ID
	sameIdentifier := apiRow("other")
	sameIdentifier.Identifier = row.Identifier
	for _, tc := range []struct {
		name string
		row  store.CommunicationRow
	}{{"same id", sameID}, {"same identifier", sameIdentifier}} {
		if err := st.CreateCommunication(ctx, tc.row, textEvent("lost "+tc.name)); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CreateCommunication with the %s: %v, want ErrConflict", tc.name, err)
		}
	}
	sameRow(t, "after the conflicts", mustRead(t, st, row.ID), want)
	if _, err := st.GetCommunication(ctx, sameIdentifier.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetCommunication of the conflicting one: %v, want ErrNotFound", err)
	}
	if got := byToken(t, st, store.TokenIdentifier, orderSystem, "ORD-other"); len(got) != 0 {
		t.Errorf("the tokens of a conflicting Communication were written: %v", got)
	}
	if ds, err := st.DeliveriesOf(ctx, sameIdentifier.ID); err != nil || len(ds) != 0 {
		t.Errorf("the deliveries of a conflicting Communication: %+v, %v; want none", ds, err)
	}
	if h, err := st.CommunicationHistory(ctx, row.ID); err != nil || len(h) != 1 {
		t.Errorf("history after the conflicts = %v, %v; want [1]", versions(h), err)
	}

	for _, v := range []int{0, 2} {
		if _, err := st.CommunicationVersion(ctx, row.ID, v); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CommunicationVersion(%d): %v, want ErrNotFound", v, err)
		}
	}
	if _, err := st.CommunicationVersion(ctx, "api-nobody", 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CommunicationVersion of an unknown id: %v, want ErrNotFound", err)
	}
	if _, err := st.CommunicationHistory(ctx, "api-nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CommunicationHistory of an unknown id: %v, want ErrNotFound", err)
	}
	published := received(t, st, "create-"+watermill.NewShortUUID(), TopicOther, 1, 300*time.Millisecond)
	sameEvent(t, published[0], ev)
}

// testUpdateCommunication: an update from the current version makes the
// next one and keeps the one it replaced; a stale version is a conflict;
// version 0 updates whatever is current. Tokens are replaced, new
// recipients queued, old deliveries kept as they stand.
func testUpdateCommunication(t *testing.T, st store.Store) {
	ctx := context.Background()
	v1 := apiRow("update")
	if err := st.CreateCommunication(ctx, v1); err != nil {
		t.Fatal(err)
	}
	other := apiRow("update-other")
	if err := st.CreateCommunication(ctx, other); err != nil {
		t.Fatal(err)
	}
	readAt := v1.Updated.Add(time.Minute)
	if err := st.SetDelivery(ctx, v1.ID, "Practitioner/a", store.DeliveryRead, readAt); err != nil {
		t.Fatal(err)
	}

	v2 := v1
	v2.Identifier = "urn:uuid:update-2"
	v2.Status, v2.Priority, v2.Category = "completed", "urgent", "alert"
	v2.Subject, v2.Encounter, v2.Sender = "Patient/p2", "", "Practitioner/s2"
	v2.Recipients = []string{"Practitioner/a", "CareTeam/icu", "Practitioner/new"}
	v2.Sent = v1.Sent.Add(time.Microsecond)
	v2.Received = v1.Updated.Add(time.Hour + 1)
	v2.Updated = v1.Updated.Add(2*time.Hour + 1)
	v2.Sealed = []byte("v2 of update")
	v2.Tokens = []store.IndexToken{
		{Param: store.TokenIdentifier, System: sourceSystem, Code: "urn:uuid:update-2"},
		{Param: store.TokenCategory, System: categorySystem, Code: "alert"},
		{Param: store.TokenCategory, System: categorySystem, Code: "alert"}, // twice: stored once
	}
	ev := textEvent("updated")
	version, err := st.UpdateCommunication(ctx, v2, 1, ev)
	if err != nil || version != 2 {
		t.Fatalf("UpdateCommunication(ifVersion 1) = %d, %v; want 2", version, err)
	}
	sameRow(t, "current after the update", mustRead(t, st, v1.ID), asRead(v2, 2))
	old, err := st.CommunicationVersion(ctx, v1.ID, 1)
	if err != nil {
		t.Fatalf("CommunicationVersion(1): %v", err)
	}
	sameRow(t, "version 1", old, asRead(v1, 1))
	cur, err := st.CommunicationVersion(ctx, v1.ID, 2)
	if err != nil {
		t.Fatalf("CommunicationVersion(2): %v", err)
	}
	sameRow(t, "version 2", cur, asRead(v2, 2))
	history, err := st.CommunicationHistory(ctx, v1.ID)
	if err != nil || !reflect.DeepEqual(versions(history), []int{2, 1}) {
		t.Fatalf("CommunicationHistory = %v, %v; want [2 1]", versions(history), err)
	}
	sameRow(t, "history[0]", history[0], asRead(v2, 2))
	sameRow(t, "history[1]", history[1], asRead(v1, 1))

	// The new recipient is queued; the others keep their state.
	ds, err := st.DeliveriesOf(ctx, v1.ID)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, d := range ds {
		states[d.Recipient] = d.State
		if d.Recipient == "Practitioner/new" && !d.UpdatedAt.Equal(asRead(v2, 2).Updated) {
			t.Errorf("the new delivery was queued at %v, want %v", d.UpdatedAt, asRead(v2, 2).Updated)
		}
	}
	wantStates := map[string]string{"Practitioner/a": store.DeliveryRead, "CareTeam/icu": store.DeliveryQueued, "Practitioner/new": store.DeliveryQueued}
	if !reflect.DeepEqual(states, wantStates) {
		t.Errorf("deliveries after the update = %v, want %v", states, wantStates)
	}

	// The tokens are those of version 2.
	for _, tc := range []struct {
		param, system, code string
		want                []string
	}{
		{store.TokenIdentifier, sourceSystem, "urn:uuid:update", []string{}},
		{store.TokenIdentifier, orderSystem, "ORD-update", []string{}},
		{store.TokenPartOf, "", "Observation/o-update", []string{}},
		{store.TokenIdentifier, sourceSystem, "urn:uuid:update-2", []string{v1.ID}},
		{store.TokenCategory, categorySystem, "alert", []string{v1.ID}},
		{store.TokenCategory, categorySystem, "notification", []string{other.ID}},
	} {
		if got := byToken(t, st, tc.param, tc.system, tc.code); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("search by %s %s|%s = %v, want %v", tc.param, tc.system, tc.code, got, tc.want)
		}
	}

	// A stale version, an unknown id, an identifier of another: nothing
	// changes, nothing is published.
	stale := v2
	stale.Sealed = []byte("stale")
	if _, err := st.UpdateCommunication(ctx, stale, 1, textEvent("lost stale")); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("UpdateCommunication(ifVersion 1) of version 2: %v, want ErrVersionConflict", err)
	}
	if _, err := st.UpdateCommunication(ctx, stale, 3, textEvent("lost future")); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("UpdateCommunication(ifVersion 3) of version 2: %v, want ErrVersionConflict", err)
	}
	unknown := apiRow("nobody")
	for _, ifVersion := range []int{0, 1} {
		if _, err := st.UpdateCommunication(ctx, unknown, ifVersion, textEvent("lost unknown")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("UpdateCommunication(ifVersion %d) of an unknown id: %v, want ErrNotFound", ifVersion, err)
		}
	}
	taken := v2
	taken.Identifier = other.Identifier
	if _, err := st.UpdateCommunication(ctx, taken, 2, textEvent("lost taken")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("UpdateCommunication to another's identifier: %v, want ErrConflict", err)
	}
	sameRow(t, "current after the failed updates", mustRead(t, st, v1.ID), asRead(v2, 2))
	if h, err := st.CommunicationHistory(ctx, v1.ID); err != nil || !reflect.DeepEqual(versions(h), []int{2, 1}) {
		t.Fatalf("CommunicationHistory after the failed updates = %v, %v; want [2 1]", versions(h), err)
	}
	if got := byToken(t, st, store.TokenIdentifier, sourceSystem, "urn:uuid:update-2"); !reflect.DeepEqual(got, []string{v1.ID}) {
		t.Errorf("tokens after the failed updates: %v", got)
	}

	// Version 0: whatever is current. Updated zero: the time sent.
	v3 := v2
	v3.Sealed, v3.Updated, v3.Received = []byte("v3 of update"), time.Time{}, time.Time{}
	v3.Tokens = nil
	if version, err := st.UpdateCommunication(ctx, v3, 0); err != nil || version != 3 {
		t.Fatalf("UpdateCommunication(ifVersion 0) = %d, %v; want 3", version, err)
	}
	sameRow(t, "version 3", mustRead(t, st, v1.ID), asRead(v3, 3))
	if h, err := st.CommunicationHistory(ctx, v1.ID); err != nil || !reflect.DeepEqual(versions(h), []int{3, 2, 1}) {
		t.Fatalf("CommunicationHistory = %v, %v; want [3 2 1]", versions(h), err)
	} else {
		sameRow(t, "history[1]", h[1], asRead(v2, 2))
	}
	if got := byToken(t, st, store.TokenIdentifier, sourceSystem, "urn:uuid:update-2"); len(got) != 0 {
		t.Errorf("version 3 has no tokens, found by version 2's: %v", got)
	}
	// A recipient taken off loses its delivery; a search by it no longer
	// finds the Communication.
	v4 := v3
	v4.Sealed, v4.Recipients = []byte("v4 of update"), []string{"Practitioner/a", "Practitioner/new"}
	if _, err := st.UpdateCommunication(ctx, v4, 3); err != nil {
		t.Fatal(err)
	}
	if ds, err := st.DeliveriesOf(ctx, v1.ID); err != nil || len(ds) != 2 || ds[0].Recipient != "Practitioner/a" || ds[0].State != store.DeliveryRead {
		t.Fatalf("deliveries after taking CareTeam/icu off = %+v, %v; want Practitioner/a (still read) and Practitioner/new", ds, err)
	}
	if got, err := st.SearchCommunications(ctx, store.CommunicationQuery{Recipient: store.TokenMatch{Any: []string{"CareTeam/icu"}}, ID: store.TokenMatch{Any: []string{v1.ID}}, Limit: 10}); err != nil || len(got) != 0 {
		t.Fatalf("search by a removed recipient = %d rows, %v; want none", len(got), err)
	}
	published := received(t, st, "update-"+watermill.NewShortUUID(), TopicOther, 1, 300*time.Millisecond)
	sameEvent(t, published[0], ev)
}

// testConcurrentUpdates: updates from the same version at once: exactly
// one wins. Unconditional ones all succeed, each with its own version.
func testConcurrentUpdates(t *testing.T, st store.Store) {
	ctx := context.Background()
	row := apiRow("race")
	if err := st.CreateCommunication(ctx, row); err != nil {
		t.Fatal(err)
	}
	const workers = 8
	run := func(ifVersion int) (map[int]int, int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := map[int]int{} // version → worker
		conflicts := 0
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := row
				r.Sealed = fmt.Appendf(nil, "worker %d from %d", w, ifVersion)
				v, err := st.UpdateCommunication(ctx, r, ifVersion)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, store.ErrVersionConflict):
					conflicts++
				case err != nil:
					errs <- err
				default:
					if prev, ok := won[v]; ok {
						errs <- fmt.Errorf("workers %d and %d both made version %d", prev, w, v)
					}
					won[v] = w
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		return won, conflicts
	}
	won, conflicts := run(1)
	if len(won) != 1 || conflicts != workers-1 {
		t.Fatalf("updates from version 1: %v won, %d conflicts; want one winner, %d conflicts", won, conflicts, workers-1)
	}
	w, ok := won[2]
	if !ok {
		t.Fatalf("the winner made version %v, want 2", won)
	}
	if c := mustRead(t, st, row.ID); c.Version != 2 || string(c.Sealed) != fmt.Sprintf("worker %d from 1", w) {
		t.Fatalf("current = version %d %q, want version 2 of worker %d", c.Version, c.Sealed, w)
	}
	won, conflicts = run(0)
	if len(won) != workers || conflicts != 0 {
		t.Fatalf("unconditional updates: %v won, %d conflicts; want all %d", won, conflicts, workers)
	}
	h, err := st.CommunicationHistory(ctx, row.ID)
	if err != nil || !reflect.DeepEqual(versions(h), []int{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}) {
		t.Fatalf("CommunicationHistory = %v, %v; want 10 … 1", versions(h), err)
	}
	for _, c := range h[:workers] {
		if want := fmt.Sprintf("worker %d from 0", won[c.Version]); string(c.Sealed) != want {
			t.Errorf("version %d is %q, want %q", c.Version, c.Sealed, want)
		}
	}
}

// testCompletionVersions: what the map stage stores is version 1, found
// by its tokens; completing it makes version 2 with the time received,
// keeping version 1.
func testCompletionVersions(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 123456000, time.UTC)
	var rows []store.CommunicationRow
	for _, id := range []string{"done-1", "done-2"} {
		m := mappedOf(id, at, []byte("p"))
		m.Events = nil
		if ok, err := st.StoreMapped(ctx, m); err != nil || !ok {
			t.Fatalf("StoreMapped(%s) = %v, %v", id, ok, err)
		}
		rows = append(rows, m.Communications[0])
	}
	a, b := rows[0], rows[1]
	sameRow(t, "mapped", mustRead(t, st, a.ID), asRead(a, 1))
	if h, err := st.CommunicationHistory(ctx, a.ID); err != nil || !reflect.DeepEqual(versions(h), []int{1}) {
		t.Fatalf("CommunicationHistory of a mapped Communication = %v, %v; want [1]", versions(h), err)
	}
	for _, tok := range a.Tokens {
		if got := byToken(t, st, tok.Param, tok.System, tok.Code); !slices.Contains(got, a.ID) {
			t.Errorf("search by %s %s|%s = %v, want it to find %s", tok.Param, tok.System, tok.Code, got, a.ID)
		}
	}
	missing := store.CommunicationQuery{ReceivedMissing: yes(), Limit: store.MaxSearchPage}
	if got := ids(search(t, st, missing)); !reflect.DeepEqual(got, []string{a.ID, b.ID}) {
		t.Fatalf("not received = %v, want both", got)
	}

	receivedAt := time.Date(2026, 11, 3, 14, 35, 0, 654321999, time.UTC)
	before := time.Now().Truncate(time.Microsecond)
	n, err := st.CompleteCommunications(ctx, []store.Completion{
		{ID: a.ID, Sealed: []byte("a completed"), Received: receivedAt},
		{ID: b.ID, Sealed: []byte("b completed")}, // received at an unknown time
	})
	after := time.Now()
	if err != nil || n != 2 {
		t.Fatalf("CompleteCommunications = %d, %v; want 2", n, err)
	}
	a2 := a
	a2.Status, a2.Sealed, a2.Received, a2.Updated = "completed", []byte("a completed"), receivedAt, receivedAt
	sameRow(t, "completed", mustRead(t, st, a.ID), asRead(a2, 2))
	old, err := st.CommunicationVersion(ctx, a.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	sameRow(t, "version 1 of a completed one", old, asRead(a, 1))
	cb := mustRead(t, st, b.ID)
	if cb.Version != 2 || cb.Status != "completed" || !cb.Received.IsZero() || cb.Updated.Before(before) || cb.Updated.After(after) {
		t.Errorf("completed without a time received: version %d, %s, received %v, updated %v (want between %v and %v)",
			cb.Version, cb.Status, cb.Received, cb.Updated, before, after)
	}
	if got := ids(search(t, st, missing)); !reflect.DeepEqual(got, []string{b.ID}) {
		t.Errorf("not received after the completions = %v, want %s", got, b.ID)
	}
	q := store.CommunicationQuery{Received: []store.TimeBound{{Op: store.GE, At: receivedAt.Truncate(time.Microsecond)}}, Limit: store.MaxSearchPage}
	if got := ids(search(t, st, q)); !reflect.DeepEqual(got, []string{a.ID}) {
		t.Errorf("received at the completion = %v, want %s", got, a.ID)
	}

	// Completed again: no new version.
	if done, err := st.CompleteCommunication(ctx, a.ID, []byte("again")); err != nil || done {
		t.Fatalf("CompleteCommunication again = %v, %v; want false", done, err)
	}
	if h, err := st.CommunicationHistory(ctx, a.ID); err != nil || !reflect.DeepEqual(versions(h), []int{2, 1}) {
		t.Fatalf("CommunicationHistory after completing again = %v, %v; want [2 1]", versions(h), err)
	}
	sameRow(t, "completed again", mustRead(t, st, a.ID), asRead(a2, 2))
}

// testSentAndPatientMissing: a Communication written without sent is
// found as sent:missing and by no bound on sent; one whose subject is no
// Patient is found as patient:missing; one without a priority sorts last
// both ways.
func testSentAndPatientMissing(t *testing.T, st store.Store) {
	ctx := context.Background()
	unsent := apiRow("unsent")
	unsent.Sent, unsent.Subject, unsent.Updated = time.Time{}, "Group/ward", time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	stat := apiRow("stat")
	stat.Priority = "stat"
	none := apiRow("none")
	none.Priority, none.Subject = "", ""
	for _, r := range []store.CommunicationRow{unsent, stat, none} {
		if err := st.CreateCommunication(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustRead(t, st, unsent.ID); !got.Sent.IsZero() {
		t.Fatalf("a Communication written without sent reads back sent %v", got.Sent)
	}
	yes, no := true, false
	far := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		q    store.CommunicationQuery
		want []string
	}{
		{"sent missing", store.CommunicationQuery{SentMissing: &yes}, []string{unsent.ID}},
		{"sent not missing", store.CommunicationQuery{SentMissing: &no}, []string{none.ID, stat.ID}},
		{"sent before 2100", store.CommunicationQuery{Sent: []store.TimeBound{{Op: store.LT, At: far}}}, []string{none.ID, stat.ID}},
		{"patient missing", store.CommunicationQuery{PatientMissing: &yes}, []string{none.ID, unsent.ID}},
		{"patient not missing", store.CommunicationQuery{PatientMissing: &no}, []string{stat.ID}},
		{"by priority", store.CommunicationQuery{Sort: store.SortByPriority}, []string{unsent.ID, stat.ID, none.ID}},
		{"by priority, stat first", store.CommunicationQuery{Sort: store.SortByPriorityDesc}, []string{stat.ID, unsent.ID, none.ID}},
	} {
		tc.q.Limit = 10
		got := ids(search(t, st, tc.q))
		if tc.q.Sort == store.SortByID {
			slices.Sort(got)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// testInboxSearchFollowsWrites: a search by one recipient and status
// (which reads the deliveries' copies of status and sent) follows every
// write that changes them: completion, update, and deliveries queued
// later.
func testInboxSearchFollowsWrites(t *testing.T, st store.Store) {
	ctx := context.Background()
	row := apiRow("inbox")
	if err := st.CreateCommunication(ctx, row); err != nil {
		t.Fatal(err)
	}
	find := func(status string, sent ...store.TimeBound) []string {
		q := store.CommunicationQuery{Recipient: store.TokenMatch{Any: []string{"Practitioner/a"}}, Status: store.TokenMatch{Any: []string{status}},
			Sent: sent, Sort: store.SortBySentDesc, Limit: 10}
		n, err := st.CountCommunications(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got := ids(search(t, st, q))
		if n != len(got) {
			t.Fatalf("count %d, but the search found %v", n, got)
		}
		return got
	}
	if got := find("in-progress"); !reflect.DeepEqual(got, []string{row.ID}) {
		t.Fatalf("new: %v", got)
	}
	if _, err := st.CompleteCommunications(ctx, []store.Completion{{ID: row.ID, Sealed: []byte("done")}}); err != nil {
		t.Fatal(err)
	}
	if got := find("in-progress"); len(got) != 0 {
		t.Fatalf("completed, still found as in-progress: %v", got)
	}
	if got := find("completed"); !reflect.DeepEqual(got, []string{row.ID}) {
		t.Fatalf("completed: %v", got)
	}
	later := row
	later.Status, later.Sent, later.Sealed = "stopped", row.Sent.Add(48*time.Hour), []byte("v3")
	if _, err := st.UpdateCommunication(ctx, later, 0); err != nil {
		t.Fatal(err)
	}
	if got := find("stopped", store.TimeBound{Op: store.GT, At: row.Sent.Add(24 * time.Hour)}); !reflect.DeepEqual(got, []string{row.ID}) {
		t.Fatalf("updated status and sent: %v", got)
	}
	// A delivery queued later carries the Communication's status too.
	if err := st.QueueDeliveries(ctx, row.ID, []string{"Practitioner/late"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	q := store.CommunicationQuery{Recipient: store.TokenMatch{Any: []string{"Practitioner/late"}}, Status: store.TokenMatch{Any: []string{"stopped"}}, Limit: 10}
	if got := ids(search(t, st, q)); !reflect.DeepEqual(got, []string{row.ID}) {
		t.Fatalf("a delivery queued later: %v", got)
	}
}
