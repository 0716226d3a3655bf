package replay_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"
	"github.com/medcall/medcall/signaling/token"
)

// TestResponsesMatchOpenAPI: openapi.yaml is a valid OpenAPI 3 document and
// every kind of response the handler gives (lists, refusals, the original
// WebM whole, in part and by HEAD, a range it cannot serve, the timeline, a
// participant's stream, a consultation recorded in two segments) validates
// against it, status, headers and body.
func TestResponsesMatchOpenAPI(t *testing.T) {
	ctx := context.Background()
	spec, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	openapi3filter.RegisterBodyDecoder("video/webm", openapi3filter.FileBodyDecoder)

	g, rid, tok := localRig(t)
	cons := putConsultation(t, g, "patient-a", "dr-1", twoPartyWebM(t))
	missing := uuid.Must(uuid.NewV7()).String()
	other := g.token("patient-z", token.RolePatient, time.Now().Add(time.Hour))
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	seg1 := putSegment(t, g, segSpec{pid: "patient-k", cid: "cons-k", doc: "dr-k", started: t0, secs: 2, body: toneWebM(t, 2, 440, 2000)})
	seg2 := putSegment(t, g, segSpec{pid: "patient-k", cid: "cons-k", doc: "dr-k", prev: seg1, started: t0.Add(3 * time.Second), secs: 2, body: toneWebM(t, 2, 660, 2600)})
	g.refresh()
	tokK := g.token("patient-k", token.RolePatient, time.Now().Add(time.Hour))
	cases := []struct {
		name, method, path, tok string
		hdr                     []string
		status                  int
	}{
		{"list", "GET", "/v1/recordings", tok, nil, 200},
		{"list, empty", "GET", "/v1/recordings", other, nil, 200},
		{"list without a token", "GET", "/v1/recordings", "", nil, 401},
		{"original", "GET", "/v1/recordings/" + rid, tok, nil, 200},
		{"original, range", "GET", "/v1/recordings/" + rid, tok, []string{"Range", "bytes=1-5"}, 206},
		{"original, range past the end", "GET", "/v1/recordings/" + rid, tok, []string{"Range", "bytes=900-999"}, 416},
		{"original, HEAD", "HEAD", "/v1/recordings/" + rid, tok, nil, 200},
		{"original of another patient", "GET", "/v1/recordings/" + rid, other, nil, 404},
		{"missing", "GET", "/v1/recordings/" + missing, tok, nil, 404},
		{"timeline", "GET", "/v1/recordings/" + cons + "/timeline", tok, nil, 200},
		{"timeline of another patient", "GET", "/v1/recordings/" + cons + "/timeline", other, nil, 404},
		{"stream", "GET", "/v1/recordings/" + cons + "/clinician.webm", tok, nil, 200},
		{"stream, range", "GET", "/v1/recordings/" + cons + "/patient.webm", tok, []string{"Range", "bytes=0-99"}, 206},
		{"list, a consultation in two segments", "GET", "/v1/recordings", tokK, nil, 200},
		{"timeline of two segments", "GET", "/v1/recordings/" + seg2 + "/timeline", tokK, nil, 200},
		{"stream across two segments", "GET", "/v1/recordings/" + seg1 + "/clinician.webm", tokK, nil, 200},
		{"stream of nobody", "GET", "/v1/recordings/" + cons + "/guest.webm", tok, nil, 404},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, g.url+c.path, nil)
		if c.tok != "" {
			req.Header.Set("Authorization", "Bearer "+c.tok)
		}
		for i := 0; i+1 < len(c.hdr); i += 2 {
			req.Header.Set(c.hdr[i], c.hdr[i+1])
		}
		resp, err := g.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.status)
			continue
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s: no route in openapi.yaml for %s %s: %v", c.name, c.method, c.path, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if c.status < 400 { // refused requests may be malformed on purpose
			if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
				t.Errorf("%s: request does not match openapi.yaml: %v", c.name, err)
			}
		}
		err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		})
		if err != nil {
			t.Errorf("%s: response %d does not match openapi.yaml: %v", c.name, resp.StatusCode, strings.SplitN(err.Error(), "\n", 2)[0])
		}
	}
}
