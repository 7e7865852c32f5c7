package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

// sameClient compares clients, JWKS nil and empty alike.
func sameClient(t *testing.T, got, want store.Client) {
	t.Helper()
	if !bytes.Equal(got.JWKS, want.JWKS) {
		t.Errorf("client %s: JWKS = %q, want %q", want.ID, got.JWKS, want.JWKS)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("client %s: CreatedAt location = %v, want UTC", want.ID, got.CreatedAt.Location())
	}
	got.JWKS, want.JWKS = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("client:\n got %+v\nwant %+v", got, want)
	}
}

// testClients: clients are registered once, listed by id, found or not,
// and disabled and enabled again.
func testClients(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 123456000, time.UTC)
	a := store.Client{ID: "ehr-a", JWKS: []byte(`{"keys":[{"kty":"EC"}]}`), Scope: "system/Communication.rs system/Patient.r", CreatedAt: at}
	b := store.Client{ID: "ehr-b", JWKSURL: "https://ehr-b.example/jwks.json", Scope: "system/Communication.cruds", CreatedAt: at.Add(time.Second)}
	c := store.Client{ID: "ehr-c", JWKSURL: "https://ehr-c.example/jwks.json", Disabled: true, CreatedAt: at.Add(time.Minute)}
	for _, cl := range []store.Client{b, c, a} {
		if err := st.AddClient(ctx, cl); err != nil {
			t.Fatalf("AddClient(%s): %v", cl.ID, err)
		}
	}
	list, err := st.ListClients(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("ListClients = %+v, %v; want 3", list, err)
	}
	for i, want := range []store.Client{a, b, c} {
		sameClient(t, list[i], want)
	}

	dup := a
	dup.Scope, dup.JWKS = "system/*.*", nil
	if err := st.AddClient(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("AddClient of an existing id: %v, want ErrConflict", err)
	}
	got, err := st.GetClient(ctx, a.ID)
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	sameClient(t, got, a) // untouched by the conflict
	if _, err := st.GetClient(ctx, "ehr-unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetClient of an unknown id: %v, want ErrNotFound", err)
	}

	// Times are kept to the microsecond, in UTC.
	d := store.Client{ID: "ehr-d", CreatedAt: time.Date(2026, 11, 3, 20, 0, 0, 987654321, time.FixedZone("UTC+5:30", 5*3600+1800))}
	if err := st.AddClient(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err = st.GetClient(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	d.CreatedAt = time.Date(2026, 11, 3, 14, 30, 0, 987654000, time.UTC)
	sameClient(t, got, d)

	for _, step := range []struct {
		id       string
		disabled bool
	}{
		{a.ID, true},
		{a.ID, true}, // again: no change, no error
		{c.ID, false},
	} {
		if err := st.SetClientDisabled(ctx, step.id, step.disabled); err != nil {
			t.Fatalf("SetClientDisabled(%s, %v): %v", step.id, step.disabled, err)
		}
		got, err := st.GetClient(ctx, step.id)
		if err != nil || got.Disabled != step.disabled {
			t.Fatalf("after SetClientDisabled(%s, %v): %+v, %v", step.id, step.disabled, got, err)
		}
	}
	if err := st.SetClientDisabled(ctx, a.ID, false); err != nil {
		t.Fatal(err)
	}
	got, err = st.GetClient(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameClient(t, got, a) // enabled again, as registered
	if err := st.SetClientDisabled(ctx, "ehr-unknown", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetClientDisabled of an unknown id: %v, want ErrNotFound", err)
	}
}

// testAssertions: an assertion is spent once per client; a replay is not
// fresh until the spend has expired and been forgotten.
func testAssertions(t *testing.T, st store.Store) {
	ctx := context.Background()
	now := time.Date(2026, 11, 3, 14, 30, 0, 123456000, time.UTC)
	exp := now.Add(5 * time.Minute)
	for _, step := range []struct {
		name      string
		client    string
		jti       string
		expires   time.Time
		now       time.Time
		wantFresh bool
	}{
		{"first spend", "ehr-a", "j1", exp, now, true},
		{"replay", "ehr-a", "j1", exp, now.Add(time.Minute), false},
		{"replay with another expiry", "ehr-a", "j1", exp.Add(time.Hour), now.Add(time.Minute), false},
		{"same jti, other client", "ehr-b", "j1", exp, now, true},
		{"other jti", "ehr-a", "j2", exp.Add(time.Minute), now, true},
		{"replay at the expiry", "ehr-a", "j1", exp.Add(time.Hour), exp, false},
		{"a microsecond after the expiry", "ehr-a", "j1", exp.Add(time.Hour), exp.Add(time.Microsecond), true},
		{"replay of the new spend", "ehr-a", "j1", exp.Add(time.Hour), exp.Add(time.Microsecond), false},
		// ehr-b's j1 was forgotten by ehr-a's spend after it expired.
		{"other client after its expiry", "ehr-b", "j1", exp.Add(time.Hour), exp.Add(time.Microsecond), true},
		{"j2 not yet expired", "ehr-a", "j2", exp.Add(time.Hour), exp.Add(time.Second), false},
		{"j2 after its expiry", "ehr-a", "j2", exp.Add(time.Hour), exp.Add(time.Minute + time.Microsecond), true},
	} {
		fresh, err := st.UseAssertion(ctx, step.client, step.jti, step.expires, step.now)
		if err != nil || fresh != step.wantFresh {
			t.Fatalf("%s: UseAssertion(%s, %s) = %v, %v; want %v", step.name, step.client, step.jti, fresh, err, step.wantFresh)
		}
	}
}

// testConcurrentAssertions: spends of one jti at once are fresh exactly
// once, also while the same jtis' expired spends are being forgotten.
func testConcurrentAssertions(t *testing.T, st store.Store) {
	ctx := context.Background()
	now := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	const workers, jtis = 8, 20
	for i := range jtis {
		if fresh, err := st.UseAssertion(ctx, "ehr-a", fmt.Sprintf("jti-%02d", i), now.Add(time.Minute), now); err != nil || !fresh {
			t.Fatalf("spending jti-%02d: %v, %v", i, fresh, err)
		}
	}
	for round, at := range []time.Time{now, now.Add(2 * time.Minute)} { // before and after those expired
		var wg sync.WaitGroup
		var mu sync.Mutex
		fresh := map[string]int{}
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range jtis {
					jti := fmt.Sprintf("jti-%02d", (k+w*3)%jtis) // each worker in its own order
					ok, err := st.UseAssertion(ctx, "ehr-a", jti, at.Add(time.Hour), at)
					if err != nil {
						errs <- err
						return
					}
					if ok {
						mu.Lock()
						fresh[jti]++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: UseAssertion: %v", round, err)
		}
		want := 1
		if round == 0 {
			want = 0 // all replays: the first spends have not expired
		}
		for i := range jtis {
			if jti := fmt.Sprintf("jti-%02d", i); fresh[jti] != want {
				t.Errorf("round %d: %s fresh %d times, want %d", round, jti, fresh[jti], want)
			}
		}
	}
}
