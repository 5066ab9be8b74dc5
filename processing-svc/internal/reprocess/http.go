package reprocess

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/processing-svc/internal/engine"
)

// atEOF reports whether dec has nothing left to read but white space:
// another value, or a stray delimiter (an error), is something.
func atEOF(dec *json.Decoder) bool {
	_, err := dec.Token()
	return errors.Is(err, io.EOF)
}

// Register mounts the admin API on mux (behind the caller's authentication:
// it is an internal API for operators and config-svc, never routed by the
// gateway):
//
//	POST /internal/v1/reprocess  {"property_id", "from", "to", "rules": "historical"|"current"}
//	    → 202 with the job, running; it runs in the background of this instance
//	    (400 invalid_json for a body that is not one object of those
//	    fields, each a string given once; 413 body_too_large for one over
//	    maxBody; 400 invalid_job for a bad range
//	    or rules, or no property_id; each naming its field;
//	    404 not_found for an unknown property; 503 unavailable when the property cannot be
//	    looked up or the job not recorded; 409 job_running while another
//	    job of the property runs: the new one is recorded, and can be
//	    resumed once the other has ended; 503 instance_busy while this
//	    instance runs Runner.MaxRunning jobs)
//	GET  /internal/v1/reprocess/{property_id}/{job_id}  → the job and its progress
//	    (404 not_found for IDs of no job, UUIDs or not)
//	POST /internal/v1/reprocess/{property_id}/{job_id}/resume  → 202 with the job, running; runs the rest
//	    (409 job_running while it, or another job of the property, runs)
func (r *Runner) Register(mux *http.ServeMux, wrap func(http.Handler) http.Handler, background context.Context) {
	// start runs a job unless another holds its property; it answers the
	// request with the job (202) or why not.
	start := func(w http.ResponseWriter, req *http.Request, j *Job) {
		_, err := r.Start(background, j.PropertyID, j.ID)
		switch {
		case errors.Is(err, ErrBusy):
			httpserver.WriteError(w, http.StatusConflict, "job_running", err.Error()+"; wait for it to end (GET its progress), then resume this job")
		case errors.Is(err, ErrInstanceBusy):
			httpserver.WriteError(w, http.StatusServiceUnavailable, "instance_busy", err.Error()+"; the job is recorded: resume it later, or on another instance")
		case err != nil:
			httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		default:
			j.Status, j.Error = StatusRunning, ""
			httpserver.WriteJSON(w, http.StatusAccepted, j)
		}
	}
	mux.Handle("POST /internal/v1/reprocess", wrap(httpserver.MaxBytes(maxBody)(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !noQuery(w, req) {
			return
		}
		in, field, err := decodeJob(req.Body)
		if httpserver.IsTooLarge(err) {
			httpserver.WriteTooLarge(w, err)
			return
		}
		if err != nil {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_json", field, "the body must be {property_id, from, to, rules}: "+err.Error())
			return
		}
		if in.PropertyID == "" {
			// Missing, not unknown: 404 would send the caller looking for a
			// property.
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_job", "property_id", "property_id is required: the ID of the property to reprocess")
			return
		}
		j, err := r.Create(req.Context(), in.PropertyID, in.From, in.To, in.Rules)
		switch {
		case errors.Is(err, engine.ErrUnknownProperty):
			httpserver.WriteFieldError(w, http.StatusNotFound, "not_found", "property_id", err.Error())
			return
		case errors.As(err, new(unavailableError)):
			httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error()+"; nothing was recorded: try again")
			return
		case err != nil:
			var fe *FieldError
			errors.As(err, &fe)
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_job", fe.fieldName(), err.Error())
			return
		}
		start(w, req, j)
	}))))
	get := func(w http.ResponseWriter, req *http.Request) (*Job, bool) {
		j, err := r.Get(req.Context(), req.PathValue("property_id"), req.PathValue("job_id"))
		switch {
		case errors.Is(err, ErrNotFound):
			httpserver.WriteError(w, http.StatusNotFound, "not_found", err.Error())
			return nil, false
		case err != nil:
			httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return nil, false
		}
		return j, true
	}
	mux.Handle("GET /internal/v1/reprocess/{property_id}/{job_id}", wrap(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !noBody(w, req) {
			return
		}
		if j, ok := get(w, req); ok {
			httpserver.WriteJSON(w, http.StatusOK, j)
		}
	})))
	mux.Handle("POST /internal/v1/reprocess/{property_id}/{job_id}/resume", wrap(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !noBody(w, req) {
			return
		}
		if j, ok := get(w, req); ok {
			start(w, req, j)
		}
	})))
}

// maxBody bounds the body of POST /internal/v1/reprocess, a job of four
// short strings: a body of any size was read whole into memory.
const maxBody = 1 << 20

// jobRequest is the body of POST /internal/v1/reprocess.
type jobRequest struct {
	PropertyID string           `json:"property_id"`
	From       string           `json:"from"`
	To         string           `json:"to"`
	Rules      engine.RulesMode `json:"rules"`
}

// decodeJob reads the body of a new job strictly: one JSON object, nothing
// after it, of those four fields, each a string (or null, left out) and
// given once. It returns the field at fault with the error, where there is
// one. A field given twice was read as its last value: "rules" given as
// "current" and then "historical" made a historical job.
func decodeJob(body io.Reader) (jobRequest, string, error) {
	var in jobRequest
	dec := json.NewDecoder(body)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("the body is empty")
		}
		return in, "", err
	}
	if !atEOF(dec) {
		return in, "", errors.New("something follows the JSON object; send one object")
	}
	if string(raw) == "null" {
		return in, "", errors.New("the body is null") // would be a job of nothing
	}
	if raw[0] != '{' { // raw is one valid JSON value (Decode)
		return in, "", errors.New("the body is not a JSON object")
	}
	targets := map[string]*string{"property_id": &in.PropertyID, "from": &in.From, "to": &in.To, "rules": (*string)(&in.Rules)}
	seen := make(map[string]bool, len(targets))
	keys := json.NewDecoder(bytes.NewReader(raw))
	keys.Token() // {
	for keys.More() {
		tok, err := keys.Token()
		if err != nil {
			return in, "", err
		}
		key := tok.(string)
		var v json.RawMessage
		if err := keys.Decode(&v); err != nil {
			return in, key, err
		}
		target, ok := targets[key]
		switch {
		case !ok:
			return in, key, fmt.Errorf("unknown field %q", key)
		case seen[key]:
			return in, key, fmt.Errorf("%s is given twice; give each field once", key)
		}
		seen[key] = true
		if string(v) == "null" {
			continue
		}
		if json.Unmarshal(v, target) != nil {
			kind := map[byte]string{'{': "an object", '[': "an array", 't': "a boolean", 'f': "a boolean"}[v[0]]
			if kind == "" {
				kind = "a number"
			}
			return in, key, fmt.Errorf("%s must be a string, not %s", key, kind)
		}
	}
	return in, "", nil
}

// fieldName is the field of a job refused for one, or "".
func (e *FieldError) fieldName() string {
	if e == nil {
		return ""
	}
	return e.Field
}

// noBody answers 400 for a request whose body holds anything but white
// space, {} or null (which ask for nothing; null is what a client sends
// that marshals a nil value), and reports whether it passed. A resume runs the job as it
// was made: {"rules": "current"} sent to one was ignored, and the job
// resumed with its own rules as if that were what was asked.
func noBody(w http.ResponseWriter, req *http.Request) bool {
	if !noQuery(w, req) {
		return false
	}
	// A byte past the bound is read, so that a longer body is refused
	// whole: one of a MiB of white space then {"rules": "current"}
	// passed as empty.
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err == nil && len(body) <= maxBody && httpserver.EmptyBody(body) {
		return true
	}
	httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", req.Method+" "+req.URL.Path+
		" takes no body: a job keeps the range and rules it was made with (make a new job for others)")
	return false
}

// noQuery answers 400 for a request with a query string, and reports
// whether it passed: none of these endpoints reads one, and a parameter
// (?rules=current) was ignored.
func noQuery(w http.ResponseWriter, req *http.Request) bool {
	if req.URL.RawQuery == "" {
		return true
	}
	name, _, _ := strings.Cut(req.URL.RawQuery, "=")
	httpserver.WriteFieldError(w, http.StatusBadRequest, "unknown_parameter", name,
		req.Method+" "+req.URL.Path+" takes no query parameters (it has "+strconv.Quote(req.URL.RawQuery)+"); a new job's fields go in its JSON body")
	return false
}
