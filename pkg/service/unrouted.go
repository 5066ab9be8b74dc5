package service

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/acme/analytics/pkg/httpserver"
)

// answerUnrouted makes mux answer a request no route takes in JSON, as
// every other error is: 404 not_found, or 405 method_not_allowed with
// Allow when the path has routes for other methods (http.ServeMux would
// answer both in plain text). A service that mounts "/" itself (the
// gateway) keeps its own answer.
func answerUnrouted(mux *http.ServeMux) {
	if _, pattern := mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/"}}); pattern != "" {
		return
	}
	mux.Handle("/", unrouted(mux))
}

// probedMethods are the methods a 405's Allow is found among.
var probedMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

func unrouted(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range probedMethods {
			probe := *r
			probe.Method = m
			if _, pattern := mux.Handler(&probe); pattern != "" && pattern != "/" {
				allow = append(allow, m)
				if m == http.MethodGet {
					allow = append(allow, http.MethodHead)
				}
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			httpserver.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed",
				r.Method+" is not allowed on "+r.URL.Path+"; it takes "+strings.Join(allow, ", "))
			return
		}
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}
