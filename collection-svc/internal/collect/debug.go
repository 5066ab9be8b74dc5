package collect

import (
	"errors"
	"net/http"

	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/httpserver"
)

// DebugResult is the answer of the validation endpoints: whether every hit
// would be accepted, and for each hit either the hit as it would be queued
// (enriched, with the truncated IP) or what is wrong with it. Nothing is
// stored and nothing goes to the dead-letter topic.
type DebugResult struct {
	Valid bool                    `json:"valid"`
	Error *httpserver.ErrorDetail `json:"error,omitempty"` // the request as a whole
	Hits  []DebugHit              `json:"hits,omitempty"`
}

// DebugHit is one hit of a DebugResult.
type DebugHit struct {
	Index int                     `json:"index"`
	Valid bool                    `json:"valid"`
	Hit   *hit.Hit                `json:"hit,omitempty"`
	Error *httpserver.ErrorDetail `json:"error,omitempty"`
}

func detail(e *parse.Error) *httpserver.ErrorDetail {
	return &httpserver.ErrorDetail{Code: e.Reason, Field: e.Field, Message: e.Message}
}

func (s *Server) debugPixel(w http.ResponseWriter, r *http.Request) {
	received := s.now()
	tid, perr := queryTrackingID(r.URL.RawQuery, "tid")
	if perr != nil {
		cors(w)
		httpserver.WriteJSON(w, http.StatusOK, DebugResult{Error: detail(perr)})
		return
	}
	f, err := parse.Query(r.URL.RawQuery)
	item := parse.Item{Fields: f}
	if err != nil {
		item.Err = err.(*parse.Error)
	}
	in := input{trackingID: tid, origin: hit.OriginBrowser, items: []parse.Item{item}, payload: func(int) string { return "" }, mem: getScratch()}
	defer putScratch(in.mem)
	s.debugRespond(w, s.handle(r.Context(), r, in, received, true))
}

func (s *Server) debugBatch(w http.ResponseWriter, r *http.Request) {
	s.debugPost(w, r, parse.Batch)
}

func (s *Server) debugMeasurement(w http.ResponseWriter, r *http.Request) {
	s.debugPost(w, r, parse.Measurement)
}

func (s *Server) debugPost(w http.ResponseWriter, r *http.Request, parseBody func([]parse.Item, []byte) ([]parse.Item, error)) {
	received := s.now()
	in, perr := s.readBatch(r, parseBody)
	defer putScratch(in.mem)
	if perr != nil {
		cors(w)
		httpserver.WriteJSON(w, http.StatusOK, DebugResult{Error: detail(perr)})
		return
	}
	s.debugRespond(w, s.handle(r.Context(), r, in, received, true))
}

func (s *Server) debugRespond(w http.ResponseWriter, out outcome) {
	cors(w)
	var res DebugResult
	switch {
	case errors.Is(out.err, errUnavailable):
		httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", "the property's configuration (or, for a cookieless property, the day's salt) cannot be read right now; retry later")
		return
	case out.err != nil:
		res.Error = detail(out.err.(*parse.Error))
	default:
		res.Valid = out.firstRejection() == nil
		for i := range out.hits {
			dh := DebugHit{Index: i, Valid: out.rejected[i] == nil, Hit: out.hits[i]}
			if out.rejected[i] != nil {
				dh.Error = detail(out.rejected[i])
			}
			res.Hits = append(res.Hits, dh)
		}
	}
	httpserver.WriteJSON(w, http.StatusOK, res)
}
