package fhir

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
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

func TestTokenAnswer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		tok    string
		life   string
		err    string
	}{
		{"ok", 200, `{"access_token":"abc","token_type":"bearer","expires_in":300,"scope":"system/AuditEvent.cu"}`, "abc", "5m0s", ""},
		{"Bearer, no expiry", 200, `{"access_token":"abc","token_type":"Bearer"}`, "abc", "5m0s", ""},
		{"refused", 401, `{"error":"invalid_client","error_description":"unknown kid"}`, "", "", "HTTP 401 invalid_client: unknown kid"},
		{"refused, no JSON", 503, `<html>`, "", "", "HTTP 503"},
		{"control characters", 400, `{"error":"invalid_scope\u001b[31m"}`, "", "", "invalid_scope[31m"},
		{"no token", 200, `{"token_type":"bearer"}`, "", "", "no usable access_token"},
		{"token with a space", 200, `{"access_token":"a b","token_type":"bearer"}`, "", "", "no usable access_token"},
		{"MAC token", 200, `{"access_token":"abc","token_type":"mac"}`, "", "", "want bearer"},
		{"negative life", 200, `{"access_token":"abc","token_type":"bearer","expires_in":-1}`, "", "", "expires_in"},
		{"string life", 200, `{"access_token":"abc","token_type":"bearer","expires_in":"soon"}`, "", "", "not a JSON token response"},
		{"not JSON", 200, `abc`, "", "", "not a JSON token response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, life, err := tokenAnswer(tc.status, []byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || tok != tc.tok || life.String() != tc.life {
				t.Fatalf("got %q, %v, %v; want %q, %s", tok, life, err, tc.tok, tc.life)
			}
		})
	}
}

func TestSMARTTokenEndpoint(t *testing.T) {
	for _, tc := range []struct {
		body, want, err string
	}{
		{`{"token_endpoint":"https://auth.example.org/token"}`, "https://auth.example.org/token", ""},
		{`{"token_endpoint":"http://127.0.0.1:9/token"}`, "http://127.0.0.1:9/token", ""},
		{`{"token_endpoint":"http://auth.example.org/token"}`, "", "loopback only"},
		{`{"token_endpoint":"https://user:pw@auth.example.org/token"}`, "", "not an https URL"},
		{`{}`, "", "no token_endpoint"},
		{`[`, "", "not JSON"},
	} {
		got, err := smartTokenEndpoint([]byte(tc.body))
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q, %q", tc.body, got, err, tc.want, tc.err)
		}
	}
}

// FuzzTokenAnswers: what an authorisation server answers never panics,
// and a token taken from it is one header value.
func FuzzTokenAnswers(f *testing.F) {
	f.Add(200, []byte(`{"access_token":"abc","token_type":"bearer","expires_in":300}`))
	f.Add(401, []byte(`{"error":"invalid_client"}`))
	f.Add(200, []byte(`{"token_endpoint":"https://auth.example.org/token"}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		tok, life, err := tokenAnswer(status, body)
		if err == nil && (tok == "" || strings.ContainsAny(tok, " \r\n") || life <= 0) {
			t.Fatalf("accepted token %q living %v", tok, life)
		}
		if err != nil && !utf8.ValidString(err.Error()) {
			t.Fatalf("error is not UTF-8: %q", err)
		}
		smartTokenEndpoint(body)
	})
}
