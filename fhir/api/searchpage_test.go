package api

import (
	"context"
	"testing"
)

// TestSearchPageCountsOnlyWhenThePageCannotTell: a page that holds the
// last matches tells the total without a count; a full page, an empty
// page past the end, or _summary=count counts; _total=none never does.
func TestSearchPageCountsOnlyWhenThePageCannotTell(t *testing.T) {
	type query struct{ limit, offset int }
	for _, tc := range []struct {
		name         string
		matches      int
		ps           pageSpec
		offset       int
		wantTotal    int // -1: none
		wantRows     int
		wantMore     bool
		wantCounted  bool
		wantSearched bool
	}{
		{"first page holds all", 5, pageSpec{Count: 20}, 0, 5, 5, false, false, true},
		{"no match", 0, pageSpec{Count: 20}, 0, 0, 0, false, false, true},
		{"full first page", 45, pageSpec{Count: 20}, 0, 45, 20, true, true, true},
		{"last page", 45, pageSpec{Count: 20}, 40, 45, 5, false, false, true},
		{"past the end", 45, pageSpec{Count: 20}, 60, 45, 0, false, true, true},
		{"count only", 45, pageSpec{Count: 20, CountOnly: true}, 0, 45, 0, false, true, false},
		{"no total", 45, pageSpec{Count: 20, NoTotal: true}, 0, -1, 20, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counted, searched := false, false
			sized := func(n int) query { return query{limit: n, offset: tc.offset} }
			count := func(_ context.Context, q query) (int, error) { counted = true; return tc.matches, nil }
			search := func(_ context.Context, q query) ([]int, error) {
				searched = true
				var rows []int
				for i := q.offset; i < tc.matches && len(rows) < q.limit; i++ {
					rows = append(rows, i)
				}
				return rows, nil
			}
			total, rows, more, err := searchPage(context.Background(), tc.ps, tc.offset, sized, count, search)
			if err != nil {
				t.Fatal(err)
			}
			got := -1
			if total != nil {
				got = *total
			}
			if got != tc.wantTotal || len(rows) != tc.wantRows || more != tc.wantMore || counted != tc.wantCounted || searched != tc.wantSearched {
				t.Errorf("total %d, %d rows, more %v, counted %v, searched %v; want %d, %d, %v, %v, %v",
					got, len(rows), more, counted, searched, tc.wantTotal, tc.wantRows, tc.wantMore, tc.wantCounted, tc.wantSearched)
			}
		})
	}
}
