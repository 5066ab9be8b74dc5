package httpserver

import (
	"bytes"
	"net/http"
)

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

// EmptyBody reports whether a request body asks for nothing, so that an
// endpoint that takes none may accept it: white space, {} (with white
// space inside or not) or null, which a client sends that marshals a nil
// value. Anything else should be refused rather than ignored.
func EmptyBody(body []byte) bool {
	t := bytes.TrimSpace(body)
	switch {
	case len(t) == 0, string(t) == "null":
		return true
	case len(t) >= 2 && t[0] == '{' && t[len(t)-1] == '}':
		return len(bytes.TrimSpace(t[1:len(t)-1])) == 0
	}
	return false
}

// EncodedBody says what a request body that is JSON only once decoded is,
// and what to send instead: gzip-compressed (Content-Encoding is not
// decoded) or started by a byte order mark, which JSON does not allow; ""
// for any other. The caller puts its own subject first ("the body "), so
// that a client hears that rather than "invalid character '\x1f'" at
// byte 1.
func EncodedBody(body []byte) string {
	switch {
	case bytes.HasPrefix(body, []byte{0x1f, 0x8b}):
		return "is gzip-compressed, and bodies are read as they are sent (Content-Encoding is not decoded); send it uncompressed"
	case bytes.HasPrefix(body, []byte("\xef\xbb\xbf")):
		return "starts with a byte order mark (EF BB BF), which JSON does not allow; send it without"
	}
	return ""
}
