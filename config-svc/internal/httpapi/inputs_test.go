package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBadInputsAnswer400WithAReason sends every kind of bad input to every
// endpoint that takes input: each is refused with 400 (413 for a body over
// the limit), a stable code, the field at fault and a reason.
func TestBadInputsAnswer400WithAReason(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Inputs")
	p := e.createProperty(a, map[string]any{"name": "Site", "hostnames": []string{"example.com"}})
	prop := "/v1/properties/" + p.ID
	rulesPath := prop + "/rules"
	huge := `{"name": "` + strings.Repeat("x", 2<<20) + `"}`
	goal := `{"id": "a", "name": "A", "page_path": "^/a"}`
	// A sign-up whose body a stray } ends: it must not create the account.
	strayEmail := fmt.Sprintf("stray-%d@inputs.example", time.Now().UnixNano())
	strayHead := e.feedHead()

	tests := []struct {
		name         string
		who          who
		method, path string
		body         any
		headers      []string
		wantCode     string
		wantField    string
		wantIn       string // part of the message
	}{
		// JSON itself.
		{"empty body", anonymous, "POST", "/v1/signup", "", nil, "invalid_json", "", "empty"},
		{"not JSON", anonymous, "POST", "/v1/signup", "email=a@b.c", nil, "invalid_json", "", "not valid JSON"},
		// Both were "invalid character ... looking for beginning of value".
		{"gzip-compressed", anonymous, "POST", "/v1/login", "\x1f\x8b\x08\x00\x00\x00\x00\x00", nil, "invalid_json", "", "the request body is gzip-compressed"},
		{"a byte order mark", anonymous, "POST", "/v1/login", "\xef\xbb\xbf{}", nil, "invalid_json", "", "starts with a byte order mark"},
		{"truncated JSON", anonymous, "POST", "/v1/login", `{"email": "a@b.c", `, nil, "invalid_json", "", "not valid JSON"},
		{"two values", anonymous, "POST", "/v1/login", `{} {}`, nil, "invalid_json", "", "more than one JSON value"},
		{"null rules reset nothing", a.as(), "PUT", rulesPath, `null`, nil, "invalid_json", "", "null"},
		{"array instead of object", anonymous, "POST", "/v1/login", `[]`, nil, "invalid_json", "", "the request body is a JSON array; send a JSON object"},
		{"string instead of object", a.as(), "PATCH", prop, `"Renamed"`, nil, "invalid_json", "", "is a JSON string"},
		{"stray } after the object", anonymous, "POST", "/v1/signup", `{"email": "` + strayEmail + `", "password": "long enough pw", "company": "c"}}`, nil, "invalid_json", "", `unexpected '}' after the JSON value ends (line 1, byte `},
		{"stray ] after the object", a.as(), "POST", "/v1/properties", "{\"name\": \"Stray\"}\n]", nil, "invalid_json", "", `unexpected ']' after the JSON value ends (line 2, byte 19)`},
		{"stray } after the rules", a.as(), "PUT", rulesPath, `{"goals": [` + goal + `]}}`, nil, "invalid_json", "", "after the JSON value ends"},
		{"stray } after a rename", a.as(), "PATCH", prop, `{"name": "Renamed"} }`, nil, "invalid_json", "", "after the JSON value ends (line 1, byte 21)"},
		{"duplicate key", a.as(), "PUT", rulesPath, `{"goals": [` + goal + `], "goals": []}`, nil, "invalid_json", "goals", "goals: given twice in one object (at line 1, byte 2 and at line 1, byte "},
		{"duplicate nested key", a.as(), "PUT", rulesPath, `{"exclusions": {"ip": ["10.0.0.0/8"], "countries": ["DE"], "ip": []}}`, nil, "invalid_json", "exclusions.ip", "given twice"},
		{"duplicate key in an array's object", a.as(), "PUT", rulesPath, `{"goals": [` + goal + `, {"id": "b", "name": "B", "page_path": "^/b", "name": ""}]}`, nil, "invalid_json", "goals[1].name", "given twice"},
		{"duplicate key spelt with an escape", a.as(), "POST", prop + "/api-secrets", `{"name": "a", "n\u0061me": "b"}`, nil, "invalid_json", "name", "given twice"},
		{"case variant of a field", a.as(), "PUT", rulesPath, `{"Goals": [` + goal + `]}`, nil, "unknown_field", "Goals", `field names are matched exactly: did you mean "goals"?`},
		{"case variant next to the field", a.as(), "PUT", rulesPath, `{"goals": [` + goal + `], "GOALS": []}`, nil, "unknown_field", "GOALS", `did you mean "goals"?`},
		{"case variant of a nested field", a.as(), "PUT", rulesPath, `{"exclusions": {"IP": ["10.0.0.0/8"]}}`, nil, "unknown_field", "exclusions.IP", `did you mean "ip"?`},
		{"duplicate sign-up field", anonymous, "POST", "/v1/signup", `{"email": "x@y.example", "password": "long enough pw", "company": "c", "company": "d"}`, nil, "invalid_json", "company", "given twice"},
		{"case variant by Unicode folding", anonymous, "POST", "/v1/signup", `{"email": "x@y.example", "paſſword": "long enough pw", "company": "c"}`, nil, "unknown_field", "paſſword", `did you mean "password"?`},
		{"not UTF-8 in a value", a.as(), "POST", "/v1/properties", "{\"name\": \"caf\xe9\"}", nil, "invalid_json", "name", "name: is not valid UTF-8 (the byte 0xe9 at line 1, byte 14); send text in UTF-8"},
		{"not UTF-8 in a rename", a.as(), "PATCH", prop, "{\"name\": \"\xffSite\"}", nil, "invalid_json", "name", "not valid UTF-8 (the byte 0xff"},
		{"not UTF-8 in a nested value", a.as(), "PUT", rulesPath, "{\"goals\": [{\"id\": \"a\", \"name\": \"\xc3(\", \"page_path\": \"^/a\"}]}", nil, "invalid_json", "goals[0].name", "goals[0].name: is not valid UTF-8 (the byte 0xc3"},
		{"not UTF-8 in a field name", a.as(), "PUT", rulesPath, "{\"exclusions\": {\"i\xf0\": []}}", nil, "invalid_json", "exclusions", "exclusions: a field name is not valid UTF-8"},
		{"half a surrogate pair", a.as(), "POST", prop + "/api-secrets", `{"name": "key \ud83d"}`, nil, "invalid_json", "name", `name: holds \ud83d (at line 1, byte 15), half of a UTF-16 surrogate pair without the other half`},
		{"surrogates in the wrong order", a.as(), "PATCH", prop, `{"name": "\ude00\ud83d"}`, nil, "invalid_json", "name", `holds \ude00`},
		{"nested too deeply", a.as(), "PUT", rulesPath, `{"goals": ` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`, nil, "invalid_json", "", "nests more than 100 arrays and objects (at line 1, byte 110)"},
		{"unknown fields: the first in the body", anonymous, "POST", "/v1/signup", manyUnknownFields(`"email": "u@y.example", `, 50), nil, "unknown_field", "f0", "not a field"},
		{"unknown goal fields: the first in the body", a.as(), "PUT", rulesPath, `{"goals": [{"id": "a", ` + manyUnknownFields("", 50)[1:] + `]}`, nil, "unknown_field", "goals[0].f0", "not a field"},
		{"unknown field", anonymous, "POST", "/v1/signup", `{"email": "a@b.co", "password": "long enough pw", "company": "c", "plan": "gold"}`, nil, "unknown_field", "plan", "not a field"},
		{"wrong type", anonymous, "POST", "/v1/login", `{"email": 5, "password": "x"}`, nil, "invalid_field", "email", "must be a string"},

		// Accounts.
		{"bad e-mail", anonymous, "POST", "/v1/signup", map[string]string{"email": "not-an-email", "password": "long enough pw", "company": "c"}, nil, "invalid_field", "email", "not an e-mail address"},
		// A NUL or another control character in an address was accepted:
		// the account (or invitation) was made with it, and the e-mail we
		// send carried it in its To header.
		{"e-mail with a NUL", anonymous, "POST", "/v1/signup", map[string]string{"email": "nul\x00@y.example", "password": "long enough pw", "company": "c"}, nil, "invalid_field", "email", "has the character U+0000"},
		{"e-mail with a vertical tab", a.as(), "POST", "/v1/users", map[string]string{"email": "vt\v@y.example", "password": "long enough pw", "role": "viewer"}, nil, "invalid_field", "email", "has the character U+000B"},
		{"invitation to an e-mail with a direction control", a.as(), "POST", "/v1/invitations", map[string]string{"email": "rlo\u202e@y.example", "role": "viewer"}, nil, "invalid_field", "email", "has the character U+202E"},
		// An invisible character made a second account for an address
		// that reads as one already held.
		{"e-mail with a zero-width space", anonymous, "POST", "/v1/signup", map[string]string{"email": "owner\u200b@y.example", "password": "long enough pw", "company": "c"}, nil, "invalid_field", "email", "has the invisible character U+200B"},
		// A domain IDNA mapping refuses named no domain, and was stored.
		{"e-mail whose domain IDNA refuses", anonymous, "POST", "/v1/signup", map[string]string{"email": "a@x\ufffd.example", "password": "long enough pw", "company": "c"}, nil, "invalid_field", "email", "the domain is not a valid domain name (disallowed rune U+FFFD)"},
		{"user whose domain IDNA refuses", a.as(), "POST", "/v1/users", map[string]string{"email": "a@my_host.example", "password": "long enough pw", "role": "viewer"}, nil, "invalid_field", "email", "(disallowed rune U+005F)"},
		{"invitation whose domain IDNA refuses", a.as(), "POST", "/v1/invitations", map[string]string{"email": "a@xn--zz.example", "role": "viewer"}, nil, "invalid_field", "email", `(invalid label "zz")`},
		{"e-mail whose domain's A-label IDNA refuses", anonymous, "POST", "/v1/signup", map[string]string{"email": "a@x\u2135y.example", "password": "long enough pw", "company": "c"}, nil, "invalid_field", "email", "its A-label xn--xy-vld.example is refused"},
		{"e-mail whose domain has an empty label", anonymous, "POST", "/v1/signup", map[string]string{"email": "a@shop..example", "password": "long enough pw", "company": "c"}, nil, "invalid_field", "email", "the domain has an empty label"},
		{"user whose domain has a label too long", a.as(), "POST", "/v1/users", map[string]string{"email": "a@" + strings.Repeat("x", 64) + ".example", "password": "long enough pw", "role": "viewer"}, nil, "invalid_field", "email", "is longer than 63 characters"},
		// An endpoint that takes no body ignored one: a verification link
		// asked for {"email": "other@..."} was mailed to the caller's own
		// address with 202, a DELETE's body was dropped.
		{"a field to an endpoint without a body", a.as(), "POST", "/v1/email-verification", map[string]string{"email": "other@y.example"}, nil, "unknown_field", "email", "email: is not a field: POST /v1/email-verification takes no body"},
		{"a body to a GET", a.as(), "GET", prop, `{"name": "x"}`, nil, "unknown_field", "name", "takes no body"},
		{"a body to a DELETE", a.as(), "DELETE", prop + "/api-secrets/" + p.ID, `[1]`, nil, "invalid_json", "", "the request body is a JSON array; DELETE"},
		{"not JSON to an endpoint without a body", a.as(), "DELETE", prop, `x=1`, nil, "invalid_json", "", "takes no body"},
		{"e-mail without domain dot", anonymous, "POST", "/v1/signup", map[string]string{"email": "a@localhost", "password": "long enough pw", "company": "c"}, nil, "invalid_field", "email", "full domain name"},
		{"short password", anonymous, "POST", "/v1/signup", map[string]string{"email": "x@y.example", "password": "short", "company": "c"}, nil, "invalid_field", "password", "at least 10 characters"},
		{"password over bcrypt's limit", anonymous, "POST", "/v1/signup", map[string]string{"email": "x@y.example", "password": strings.Repeat("p", 73), "company": "c"}, nil, "invalid_field", "password", "at most 72 bytes"},
		{"password is the e-mail", anonymous, "POST", "/v1/signup", map[string]string{"email": "longname@y.example", "password": "longname@y.example", "company": "c"}, nil, "invalid_field", "password", "e-mail address"},
		{"no company", anonymous, "POST", "/v1/signup", map[string]string{"email": "x@y.example", "password": "long enough pw"}, nil, "invalid_field", "company", "required"},
		{"login without password", anonymous, "POST", "/v1/login", map[string]string{"email": "x@y.example"}, nil, "invalid_field", "password", "required"},
		{"refresh with an access token", anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": "eyJhbGciOi"}, nil, "invalid_field", "refresh_token", "refresh token from login"},
		{"logout without token", a.as(), "POST", "/v1/logout", map[string]string{}, nil, "invalid_field", "refresh_token", "required"},
		{"user with unknown role", a.as(), "POST", "/v1/users", map[string]string{"email": "v@y.example", "password": "long enough pw", "role": "owner"}, nil, "invalid_field", "role", "admin or viewer"},
		{"blank tenant name", a.as(), "PATCH", "/v1/tenants/me", map[string]string{"name": "  "}, nil, "invalid_field", "name", "required"},

		// Properties.
		{"property without name", a.as(), "POST", "/v1/properties", map[string]any{"hostnames": []string{"a.example"}}, nil, "invalid_field", "name", "required"},
		{"hostname as URL", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "hostnames": []string{"https://shop.example/"}}, nil, "invalid_field", "hostnames[0]", "looks like a URL"},
		{"hostname of one label", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "hostnames": []string{"com"}}, nil, "invalid_field", "hostnames[0]", "name of one label"},
		{"hostname with port", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "hostnames": []string{"a.example", "b.example:8080"}}, nil, "invalid_field", "hostnames[1]", "without a port"},
		{"duplicate hostname", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "hostnames": []string{"a.example", "A.example"}}, nil, "invalid_field", "hostnames[1]", "listed twice"},
		{"unknown time zone", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "time_zone": "Mars/Olympus"}, nil, "invalid_field", "time_zone", "IANA time zone"},
		{"Local is no time zone", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "time_zone": "Local"}, nil, "invalid_field", "time_zone", "IANA time zone"},
		// Files of the host's zone directory that are no IANA zone loaded,
		// and were stored: localtime is each host's own zone.
		{"the host's localtime", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "time_zone": "localtime"}, nil, "invalid_field", "time_zone", "the server's own time zone"},
		{"posixrules", a.as(), "PATCH", prop, map[string]any{"time_zone": "posixrules"}, nil, "invalid_field", "time_zone", "not an IANA time zone name"},
		{"a right/ zone", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "time_zone": "right/Europe/Berlin"}, nil, "invalid_field", "time_zone", `a copy of the zone database, not an IANA time zone name; give "Europe/Berlin"`},
		{"a posix/ zone", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "time_zone": "posix/Asia/Tokyo"}, nil, "invalid_field", "time_zone", `give "Asia/Tokyo"`},
		// IANA's placeholder for a local time not set yet (UTC, shown as
		// -00) was stored as the property's zone.
		{"the Factory placeholder", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "time_zone": "Factory"}, nil, "invalid_field", "time_zone", "the zone database's placeholder for a local time not set yet"},
		{"posix/localtime", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "time_zone": "posix/localtime"}, nil, "invalid_field", "time_zone", "not an IANA time zone name"},
		// Paths LoadLocation resolves to the same files past those checks.
		{"./localtime", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "time_zone": "./localtime"}, nil, "invalid_field", "time_zone", "not an IANA time zone name"},
		{"a zone's path with //", a.as(), "PATCH", prop, map[string]any{"time_zone": "Europe//Berlin"}, nil, "invalid_field", "time_zone", "not an IANA time zone name"},
		{"a zone's path with ./", a.as(), "PATCH", prop, map[string]any{"time_zone": "Europe/./Berlin"}, nil, "invalid_field", "time_zone", "not an IANA time zone name"},
		{"unknown currency", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "currency": "EURO"}, nil, "invalid_field", "currency", "ISO 4217"},
		{"lower-case currency", a.as(), "PATCH", prop, map[string]any{"currency": "eur"}, nil, "invalid_field", "currency", `upper case: "EUR"`},
		{"processing shards are operators'", a.as(), "PATCH", prop, map[string]any{"processing_shards": 8}, nil, "read_only_field", "processing_shards", "operators"},
		{"tracking ID is assigned", a.as(), "POST", "/v1/properties", map[string]any{"name": "x", "tracking_id": "AT-MINEMINEMI"}, nil, "read_only_field", "tracking_id", "assigned by the service"},
		{"cookieless not a bool", a.as(), "PATCH", prop, `{"cookieless": "yes"}`, nil, "invalid_field", "cookieless", "true or false"},
		// null in a PATCH: JSON Merge Patch's "clear it", which was
		// answered 200 with nothing changed.
		{"null name in a rename", a.as(), "PATCH", prop, `{"name": null}`, nil, "invalid_field", "name", "name: is null; a PATCH changes only the fields it gives and cannot clear one: leave name out to keep it, or give its new value"},
		{"null hostnames", a.as(), "PATCH", prop, `{"name": "Renamed", "hostnames": null}`, nil, "invalid_field", "hostnames", "or give its new value ([] for none)"},
		{"null time zone", a.as(), "PATCH", prop, `{"time_zone": null}`, nil, "invalid_field", "time_zone", "leave time_zone out"},
		{"null tenant name", a.as(), "PATCH", "/v1/tenants/me", `{"name": null}`, nil, "invalid_field", "name", "is null"},
		{"null role", a.as(), "PATCH", "/v1/users/" + a.tokens.UserID, `{"role": null}`, nil, "invalid_field", "role", "is null"},
		{"secret without name", a.as(), "POST", prop + "/api-secrets", map[string]string{}, nil, "invalid_field", "name", "required"},
		// A field left out is called required: it was "is empty", "must be
		// at least 10 characters long" and `"" is not a role`.
		{"sign-up without e-mail", anonymous, "POST", "/v1/signup", map[string]string{"password": "correct horse battery", "company": "X"}, nil, "invalid_field", "email", "email: is required"},
		{"sign-up without password", anonymous, "POST", "/v1/signup", map[string]string{"email": "nopw@inputs.example", "company": "X"}, nil, "invalid_field", "password", "password: is required"},
		{"user without role", a.as(), "POST", "/v1/users", map[string]string{"email": "norole@inputs.example", "password": "correct horse battery"}, nil, "invalid_field", "role", "role: is required; use admin or viewer"},
		{"invitation without role", a.as(), "POST", "/v1/invitations", map[string]string{"email": "norole@inputs.example"}, nil, "invalid_field", "role", "role: is required"},
		{"password reset without e-mail", anonymous, "POST", "/v1/password-reset", map[string]string{}, nil, "invalid_field", "email", "email: is required"},
		{"body over the limit", a.as(), "POST", "/v1/properties", huge, nil, "body_too_large", "", "the limit is 1048576 bytes (1 MiB)"},
		{"body over the limit, chunked", a.as(), "POST", "/v1/properties", strings.NewReader(huge), nil, "body_too_large", "", "the request body is larger than the limit of 1048576 bytes (1 MiB)"},
		{"rules over the limit, chunked", a.as(), "PUT", rulesPath, strings.NewReader(huge), nil, "body_too_large", "", "the limit of 1048576 bytes (1 MiB)"},
		{"page after not an ID", a.as(), "GET", "/v1/properties?after=site-7", nil, nil, "invalid_field", "after", `"site-7" is not a property ID; give the next_after`},
		{"page limit out of range", a.as(), "GET", "/v1/properties?limit=501", nil, nil, "invalid_field", "limit", "1 to 500"},
		{"page limit zero", a.as(), "GET", "/v1/properties?limit=0", nil, nil, "invalid_field", "limit", "1 to 500"},
		{"users page after not an ID", a.as(), "GET", "/v1/users?after=%7E", nil, nil, "invalid_field", "after", `"~" is not a user ID`},
		{"users page limit out of range", a.as(), "GET", "/v1/users?limit=1000", nil, nil, "invalid_field", "limit", "1 to 500"},

		// Rules: JSON shape with paths.
		{"unknown rules field", a.as(), "PUT", rulesPath, `{"exclusions": {"ips": ["10.0.0.0/8"]}}`, nil, "unknown_field", "exclusions.ips", "not a field"},
		{"unknown goal field", a.as(), "PUT", rulesPath, `{"goals": [{"id": "a", "name": "A", "page_path": "^/a"}, {"id": "b", "name": "B", "url": "/b"}]}`, nil, "unknown_field", "goals[1].url", "not a field"},
		{"goal value not a number", a.as(), "PUT", rulesPath, `{"goals": [{"id": "a", "name": "A", "page_path": "^/a", "value": "5"}]}`, nil, "invalid_field", "goals[0].value", "must be a number"},
		{"timeout not whole", a.as(), "PUT", rulesPath, `{"session_timeout_minutes": 30.5}`, nil, "invalid_field", "session_timeout_minutes", "whole number"},
		// Rules: validation with paths.
		{"bad CIDR", a.as(), "PUT", rulesPath, `{"exclusions": {"ip": ["10.0.0.1", "192.168.0.0/16", "10.0.0.0/33"]}}`, nil, "invalid_field", "exclusions.ip[2]", `"10.0.0.0/33" is not a CIDR`},
		{"IPv4-mapped address", a.as(), "PUT", rulesPath, `{"exclusions": {"ip": ["203.0.113.7", "::ffff:10.0.0.1"]}}`, nil, "invalid_field", "exclusions.ip[1]", `"::ffff:10.0.0.1" is an IPv4-mapped IPv6 address; write it in IPv4 form: "10.0.0.1"`},
		{"IPv4-mapped address validated", a.as(), "POST", rulesPath + "/validate", `{"exclusions": {"ip": ["::ffff:203.0.113.7"]}}`, nil, "invalid_field", "exclusions.ip[0]", `write it in IPv4 form: "203.0.113.7"`},
		{"IPv4-mapped prefix", a.as(), "PUT", rulesPath, `{"exclusions": {"ip": ["::ffff:10.0.0.0/104"]}}`, nil, "invalid_field", "exclusions.ip[0]", "IPv4-mapped IPv6 prefix; write it in IPv4 form"},
		{"bad regex", a.as(), "PUT", rulesPath, `{"exclusions": {"user_agents": ["Headless(Chrome"]}}`, nil, "invalid_field", "exclusions.user_agents[0]", "not a valid regular expression"},
		{"page pattern paths never match", a.as(), "PUT", rulesPath, `{"pages": {"exclude": ["^/café$"]}}`, nil, "invalid_field", "pages.exclude[0]", `"^/café$" can never match "é": paths hold it percent-encoded, as "%C3%A9"`},
		{"goal pattern with a space validated", a.as(), "POST", rulesPath + "/validate", `{"goals": [{"id": "a", "name": "A", "page_path": "^/thank you$"}]}`, nil, "invalid_field", "goals[0].page_path", `as "%20"`},
		{"upper case under lowercase", a.as(), "PUT", rulesPath, `{"page_path": {"lowercase": true}, "pages": {"include": ["^/Blog/"]}}`, nil, "invalid_field", "pages.include[0]", "page_path.lowercase is on"},
		{"user agent pattern matching all", a.as(), "PUT", rulesPath, `{"exclusions": {"user_agents": ["HeadlessChrome|"]}}`, nil, "invalid_field", "exclusions.user_agents[0]", "would exclude all traffic"},
		{"bad country", a.as(), "PUT", rulesPath, `{"exclusions": {"countries": ["Germany"]}}`, nil, "invalid_field", "exclusions.countries[0]", "ISO 3166-1"},
		{"bad replacement", a.as(), "PUT", rulesPath, `{"page_path": {"replacements": [{"pattern": "^/p/(\\d+)", "replace": "/p/$1x"}]}}`, nil, "invalid_field", "page_path.replacements[0].replace", "${1}"},
		{"bad anonymization", a.as(), "PUT", rulesPath, `{"ip_anonymization": "off"}`, nil, "invalid_field", "ip_anonymization", "standard"},
		{"bad referral exclusion", a.as(), "PUT", rulesPath, `{"referral_exclusions": ["*.paypal.com"]}`, nil, "invalid_field", "referral_exclusions[0]", "subdomains"},
		{"goal without kind", a.as(), "PUT", rulesPath, `{"goals": [{"id": "a", "name": "A"}]}`, nil, "invalid_field", "goals[0]", "needs page_path"},
		{"channel without condition", a.as(), "PUT", rulesPath, `{"channels": [{"name": "Partners"}]}`, nil, "invalid_field", "channels[0]", "at least one of"},
		{"too many patterns", a.as(), "PUT", rulesPath, manyUserAgents(51), nil, "too_expensive", "exclusions.user_agents", "the limit is 50"},
		{"too costly in all", a.as(), "PUT", rulesPath, manyUserAgents(45), nil, "too_expensive", "exclusions.user_agents", "can be evaluated on every hit"},
		{"If-Match not a version", a.as(), "PUT", rulesPath, `{}`, []string{"If-Match", "yesterday"}, "invalid_field", "If-Match", "not a rule version"},
		// An empty If-Match (a client's unset variable) was read as none,
		// and the rules replaced whatever their version.
		{"If-Match empty", a.as(), "PUT", rulesPath, `{"bot_filtering": false}`, []string{"If-Match", ""}, "invalid_field", "If-Match", `If-Match: is empty; send the ETag of GET .../rules as it is, quotes included, e.g. "3"`},
		{"If-Match of empty list elements", a.as(), "PUT", rulesPath, `{"bot_filtering": false}`, []string{"If-Match", " , "}, "invalid_field", "If-Match", "is empty"},
		{"at not a time", a.as(), "GET", rulesPath + "?at=yesterday", nil, nil, "invalid_field", "at", "RFC 3339"},
		// In the format, but no such time: it said "not in RFC 3339 format".
		{"at a day that does not exist", a.as(), "GET", rulesPath + "?at=2026-02-30T00:00:00Z", nil, nil, "invalid_field", "at", `"2026-02-30T00:00:00Z" is not a time: February 2026 has no day 30 (it has days 1 to 28)`},
		{"at a month that does not exist", a.as(), "GET", rulesPath + "?at=2026-13-01T00:00:00Z", nil, nil, "invalid_field", "at", "there is no month 13"},
		{"at an hour that does not exist", a.as(), "GET", rulesPath + "?at=2026-03-01T24:00:00Z", nil, nil, "invalid_field", "at", "is not a time: its hour out of range (hours are 00 to 23"},

		// Internal endpoints.
		// It was called "0 is out of range".
		{"shards missing", service("operator"), "PUT", "/internal/v1/properties/" + p.ID + "/processing-shards", `{}`, nil, "invalid_field", "processing_shards", "processing_shards: is required; give 1 to 64"},
		{"shards null", service("operator"), "PUT", "/internal/v1/properties/" + p.ID + "/processing-shards", `{"processing_shards": null}`, nil, "invalid_field", "processing_shards", "processing_shards: is required"},
		{"shards out of range", service("operator"), "PUT", "/internal/v1/properties/" + p.ID + "/processing-shards", map[string]int{"processing_shards": 65}, nil, "invalid_field", "processing_shards", "1 to 64"},
		{"since not a number", service("collection"), "GET", "/internal/v1/changes?since=abc", nil, nil, "invalid_field", "since", "feed position"},
		{"wait not a duration", service("collection"), "GET", "/internal/v1/changes?since=0&wait=forever", nil, nil, "invalid_field", "wait", "duration"},
		{"limit out of range", service("collection"), "GET", "/internal/v1/changes?since=0&limit=5000", nil, nil, "invalid_field", "limit", "1 to 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.who, tt.method, tt.path, tt.body, tt.headers...)
			wantStatus := http.StatusBadRequest
			if tt.wantCode == "body_too_large" {
				wantStatus = http.StatusRequestEntityTooLarge
			}
			got := r.apiError()
			if r.code != wantStatus || got.Code != tt.wantCode || got.Field != tt.wantField || !strings.Contains(got.Message, tt.wantIn) {
				t.Fatalf("%s %s = %d %s\nwant %d, code %s, field %q, message containing %q", tt.method, tt.path, r.code, r.body, wantStatus, tt.wantCode, tt.wantField, tt.wantIn)
			}
		})
	}
	// An endpoint without a body still takes none, white space, {} or
	// null (what a client that marshals a nil value sends: it asks for
	// nothing; it was refused as "the request body is a JSON object").
	for _, body := range []any{nil, " \n", "{}", "null", strings.NewReader(""), strings.NewReader("null\n")} {
		e.must(http.StatusOK, a.as(), "GET", prop, body)
	}
	// None of it changed anything.
	var history struct{ Versions []RuleVersionSummary }
	e.must(http.StatusOK, a.as(), "GET", rulesPath+"/versions", nil).decode(t, &history)
	if len(history.Versions) != 1 {
		t.Fatalf("bad rule documents made %d versions", len(history.Versions)-1)
	}
	var props struct{ Properties []PropertyJSON }
	e.must(http.StatusOK, a.as(), "GET", "/v1/properties", nil).decode(t, &props)
	if len(props.Properties) != 1 || props.Properties[0].Name != "Site" {
		t.Fatalf("bad inputs changed the properties: %+v", props.Properties)
	}
	var secrets struct {
		APISecrets []SecretJSON `json:"api_secrets"`
	}
	e.must(http.StatusOK, a.as(), "GET", prop+"/api-secrets", nil).decode(t, &secrets)
	if len(secrets.APISecrets) != 0 {
		t.Fatalf("bad inputs made API secrets: %+v", secrets.APISecrets)
	}
	e.must(http.StatusUnauthorized, anonymous, "POST", "/v1/login", map[string]string{"email": strayEmail, "password": "long enough pw"})
	if got := e.feedHead(); got != strayHead {
		t.Fatalf("bad inputs appended %d changes to the feed", got-strayHead)
	}
}

// manyUnknownFields is a JSON object of n unknown fields f0, f1, ... after
// the members in known (each followed by ", ").
func manyUnknownFields(known string, n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf(`"f%d": %d`, i, i))
	}
	return "{" + known + strings.Join(parts, ", ") + "}"
}

// manyUserAgents is a rules document with n user agent patterns of about
// 200 compiled instructions each.
func manyUserAgents(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf(`"bot%d[a-z]{0,20}[a-z]{0,20}~"`, i))
	}
	return `{"exclusions": {"user_agents": [` + strings.Join(parts, ",") + `]}}`
}

// TestEtcGMTZonesKeepTheirPOSIXSign: Etc/GMT+5 is a valid IANA name and
// is accepted as given, though it is five hours behind UTC (POSIX's
// inverted sign), as docs/config.md warns; nothing rewrites it.
func TestEtcGMTZonesKeepTheirPOSIXSign(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Zones")
	for _, tt := range []struct {
		zone   string
		offset time.Duration
	}{
		{"Etc/GMT+5", -5 * time.Hour},
		{"Etc/GMT-14", 14 * time.Hour},
	} {
		p := e.createProperty(a, map[string]any{"name": tt.zone, "time_zone": tt.zone})
		if p.TimeZone != tt.zone {
			t.Fatalf("time_zone %q stored as %q", tt.zone, p.TimeZone)
		}
		loc, err := time.LoadLocation(p.TimeZone)
		if err != nil {
			t.Fatal(err)
		}
		if _, off := time.Date(2026, 1, 1, 12, 0, 0, 0, loc).Zone(); time.Duration(off)*time.Second != tt.offset {
			t.Errorf("%s is UTC%+d h, want %v", tt.zone, off/3600, tt.offset)
		}
	}
}
