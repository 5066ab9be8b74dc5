package httpserver

import "net/http"

// ErrorBody is the JSON shape of every error response of every service:
// a stable machine-readable code and a message that tells a person what was
// wrong and how to fix it.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// WriteError writes an ErrorBody with the given HTTP status.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: message}})
}

// WriteFieldError writes an ErrorBody naming the offending input field.
func WriteFieldError(w http.ResponseWriter, status int, code, field, message string) {
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Field: field, Message: message}})
}
