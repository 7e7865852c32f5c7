package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The load generator's own HTTP client must read every kind of answer the
// server gives to the end (a fixed length, chunked, a closed connection),
// or the next request on the connection reads the last one's rest.
func TestConnReadsEachAnswerWhole(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type")+" "+string(body))
		switch r.URL.Path {
		case "/fhir/big": // larger than net/http buffers: sent chunked
			w.Write([]byte(strings.Repeat("x", 100_000)))
		case "/fhir/bye":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusNotFound)
		case "/fhir/Communication":
			w.WriteHeader(http.StatusCreated)
		default:
			w.Write([]byte(`{"resourceType":"Communication"}`))
		}
	}))
	defer srv.Close()
	tgt, err := parseTarget(srv.URL + "/fhir/")
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{addr: tgt.host, timeout: 5 * time.Second}
	defer c.close()
	for _, step := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/small", "", 200},
		{"GET", "/big", "", 200},
		{"POST", "/Communication", `{"resourceType":"Communication"}`, 201},
		{"GET", "/bye", "", 404},
		{"GET", "/Communication?recipient=Practitioner/x&_count=20", "", 201}, // after a closed connection, a new one
	} {
		var body []byte
		if step.body != "" {
			body = []byte(step.body)
		}
		code, err := c.do(tgt.request(nil, step.method, step.path, "tok", body))
		if err != nil || code != step.want {
			t.Fatalf("%s %s: %d, %v; want %d", step.method, step.path, code, err, step.want)
		}
	}
	want := []string{
		"GET /fhir/small Bearer tok  ",
		"GET /fhir/big Bearer tok  ",
		`POST /fhir/Communication Bearer tok application/fhir+json {"resourceType":"Communication"}`,
		"GET /fhir/bye Bearer tok  ",
		"GET /fhir/Communication?recipient=Practitioner/x&_count=20 Bearer tok  ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the server saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseTargetRefusesWhatItCannotSpeak(t *testing.T) {
	for _, u := range []string{"https://127.0.0.1:8443/fhir", "127.0.0.1:8080/fhir", "http:///fhir"} {
		if _, err := parseTarget(u); err == nil {
			t.Errorf("parseTarget(%q) accepted it", u)
		}
	}
	tgt, err := parseTarget("http://localhost/fhir")
	if err != nil || tgt.host != "localhost:80" || tgt.path != "/fhir" {
		t.Errorf("parseTarget(http://localhost/fhir) = %+v, %v", tgt, err)
	}
}
