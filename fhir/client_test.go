package fhir

import (
	"reflect"
	"testing"
)

func TestTransactionStatuses(t *testing.T) {
	for _, tc := range []struct {
		body string
		n    int
		want []int
		ok   bool
	}{
		{`{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created"}},{"response":{"status":"200"}}]}`, 2, []int{201, 200}, true},
		{`{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"422 Unprocessable"}}]}`, 1, []int{422}, true},
		{``, 2, []int{200, 200}, true},
		{`{"resourceType":"Bundle","type":"transaction-response"}`, 1, []int{200}, true},
		{`{"resourceType":"Bundle","entry":[{"response":{"status":"201"}}]}`, 2, nil, false},
		{`{"resourceType":"Bundle","entry":[{"response":{"status":"created"}}]}`, 1, nil, false},
		{`{"resourceType":"Bundle","entry":[{"response":{"status":"9999"}}]}`, 1, nil, false},
		{`{"resourceType":"OperationOutcome"}`, 1, nil, false},
		{`<html>`, 1, nil, false},
	} {
		got, err := transactionStatuses([]byte(tc.body), tc.n)
		if (err == nil) != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v (ok %v)", tc.body, got, err, tc.want, tc.ok)
		}
	}
}

func TestFirstIssueCodeKeepsOnlyCodes(t *testing.T) {
	for body, want := range map[string]string{
		`{"resourceType":"OperationOutcome","issue":[{"code":"processing","diagnostics":"Patient SMITH"}]}`: "processing",
		`{"resourceType":"OperationOutcome","issue":[{"code":"SMITH, JOHN"}]}`:                              "",
		`{"resourceType":"Bundle","issue":[{"code":"invalid"}]}`:                                            "",
		`not json`: "",
	} {
		if got := firstIssueCode([]byte(body)); got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
}

// FuzzEHRAnswers: whatever an EHR answers, reading it neither panics nor
// yields a status outside HTTP's range or an issue code that is not one.
func FuzzEHRAnswers(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"response":{"status":"201 Created"}}]}`), 1)
	f.Add([]byte(`{"resourceType":"OperationOutcome","issue":[{"code":"processing"}]}`), 2)
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		n = n & 0xff
		if statuses, err := transactionStatuses(body, n); err == nil {
			if len(statuses) != n {
				t.Fatalf("%d statuses for %d entries", len(statuses), n)
			}
			for _, s := range statuses {
				if s < 100 || s > 599 {
					t.Fatalf("status %d", s)
				}
			}
		}
		for _, r := range firstIssueCode(body) {
			if (r < 'a' || r > 'z') && r != '-' {
				t.Fatalf("issue code with %q", r)
			}
		}
	})
}
