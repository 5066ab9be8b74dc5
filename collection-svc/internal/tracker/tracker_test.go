package tracker

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/acme/analytics/collection-svc/internal/parse"
)

func TestScriptIsSmall(t *testing.T) {
	s := Load()
	if s.Size() >= 2048 {
		t.Fatalf("tracker.js is %d bytes gzipped; it must stay under 2 KB", s.Size())
	}
	t.Logf("tracker.js: %d bytes minified, %d gzipped", len(s.plain), s.Size())
}

func TestServe(t *testing.T) {
	s := Load()
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// Each content coding is a representation with its own ETag: a cache
	// holding the plain script must not be told the gzipped one matches.
	plainTag, gzipTag := s.etag, strings.TrimSuffix(s.etag, `"`)+`-gzip"`
	tests := []struct {
		name, path, acceptEncoding, ifNoneMatch string
		wantStatus                              int
		wantCache, wantEncoding, wantETag       string
	}{
		{"latest gzip", "/tracker.js", "gzip, br", "", 200, "public, max-age=300", "gzip", gzipTag},
		{"latest plain", "/tracker.js", "identity", "", 200, "public, max-age=300", "", plainTag},
		// Not immutable: fixes within the version change it.
		{"pinned", "/tracker/v1.js", "gzip", "", 200, "public, max-age=86400", "gzip", gzipTag},
		{"not modified", "/tracker.js", "gzip", gzipTag, 304, "public, max-age=300", "", gzipTag},
		{"not modified, plain", "/tracker.js", "identity", plainTag, 304, "public, max-age=300", "", plainTag},
		{"not modified, any tag", "/tracker.js", "gzip", "*", 304, "public, max-age=300", "", gzipTag},
		{"not modified, one of a list, weak", "/tracker.js", "gzip", `"other", W/` + gzipTag, 304, "public, max-age=300", "", gzipTag},
		{"the plain tag for the gzipped script", "/tracker.js", "gzip", plainTag, 200, "public, max-age=300", "gzip", gzipTag},
		{"unknown version", "/tracker/v999.js", "gzip", "", 404, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			req.Header.Set("Accept-Encoding", tt.acceptEncoding)
			if tt.ifNoneMatch != "" {
				req.Header.Set("If-None-Match", tt.ifNoneMatch)
			}
			// A transport that does not decompress for us.
			resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == 404 {
				return
			}
			if got := resp.Header.Get("Cache-Control"); got != tt.wantCache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.wantCache)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			// Else a cross-origin isolated page (COEP require-corp) cannot load it.
			if got := resp.Header.Get("Cross-Origin-Resource-Policy"); got != "cross-origin" {
				t.Errorf("Cross-Origin-Resource-Policy = %q, want cross-origin", got)
			}
			if got := resp.Header.Get("ETag"); got != tt.wantETag {
				t.Errorf("ETag = %q, want %q", got, tt.wantETag)
			}
			if got := resp.Header.Get("Content-Encoding"); got != tt.wantEncoding {
				t.Errorf("Content-Encoding = %q, want %q", got, tt.wantEncoding)
			}
			if tt.wantStatus != 200 {
				return
			}
			var body io.Reader = resp.Body
			if tt.wantEncoding == "gzip" {
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			b, _ := io.ReadAll(body)
			if !strings.Contains(string(b), "/collect?tid=") || string(b) != string(s.plain) {
				t.Fatalf("body is not the script:\n%s", b)
			}
		})
	}
}

func TestMinify(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"licence kept, comments and indentation dropped", "/*! Licence | docs/x.md */\n  // a comment\n  var a = 1;\n", "/*! Licence | docs/x.md */\nvar a=1;\n"},
		{"strings kept", `s = 'a ; b }' + "c { d" + 'it\'s ' + x;`, `s='a ; b }'+"c { d"+'it\'s '+x;` + "\n"},
		{"regular expressions kept", `m = x.match(/(?:^|; )a=([^;/ ]+) /g), y = / x/.test(z);`, `m=x.match(/(?:^|; )a=([^;/ ]+) /g),y=/ x/.test(z);` + "\n"},
		{"words apart", `if (typeof a == 'object') return b; else if (c in d) e();`, `if(typeof a=='object')return b;else if(c in d)e();` + "\n"},
		{"signs apart", `a = b - -c + +d - e + f;`, `a=b- -c+ +d-e+f;` + "\n"},
		{"semicolon before a brace", "function f() { g(); }\nfunction h() {\n  return 1;\n}\n", "function f(){g()}function h(){return 1}\n"},
		{"line breaks that end no statement", "var a = {\n  b: 1,\n  c: f(x,\n    y)\n};\nd = a ||\n  e;\n", "var a={b:1,c:f(x,y)};d=a||e;\n"},
		{"line breaks that may end a statement", "a = b\nc = 'd'\ni++\ne = /f/\ng()\n[1].h()\n", "a=b\nc='d'\ni++\ne=/f/\ng()\n[1].h()\n"},
		{"regular expressions after keywords and operators", `function f() { return /(?:^|; )x/.test(y) || typeof /a b/ + / c/; }`, `function f(){return/(?:^|; )x/.test(y)||typeof/a b/+/ c/}` + "\n"},
		{"division after a name, a number or ]", `a = b / 2 / c[1] / 3;`, `a=b/2/c[1]/3;` + "\n"},
		{"empty statement kept", "function f() {\n  while (g()) ;\n}\nfor (;;) { h(); }\n", "function f(){while(g());}for(;;){h()}\n"},
		{"no <!--", `a = b < !--c;`, `a=b< !--c;` + "\n"},
		{"a number's dot apart", `s = 1 .toString();`, `s=1 .toString();` + "\n"},
		{"line breaks after a statement's closing brace", "function f() {\n  g();\n}\nfunction h(a) {\n  if (a) {\n    b();\n  }\n  else c();\n  try { d(); } catch (e) {}\n  for (;;) {}\n  while (a) {}\n  do {\n    a--;\n  }\n  while (a)\n  e();\n}\n[1].h();\n", "function f(){g()}function h(a){if(a){b()}else c();try{d()}catch(e){}for(;;){}while(a){}do{a--}while(a)\ne()}[1].h();\n"},
		{"functions declared in a function and after a statement", "(function () {\n  var a = { b: 1 };\n  function f() {}\n  if (a) {}\n  function g() {}\n  f();\n})();\n", "(function(){var a={b:1};function f(){}if(a){}function g(){}f()})();\n"},
		{"line breaks kept after an object or a function expression", "var f = function () {\n  g();\n}\n(h)\nvar o = {}\nx = 1\nif (a) b = function g() {}\nc()\nk = [function () {}]\n", "var f=function(){g()}\n(h)\nvar o={}\nx=1\nif(a)b=function g(){}\nc()\nk=[function(){}]\n"},
		{"line breaks kept where a declaration is not known for one", "x = y\nfunction f() {}\nz()\nswitch (a) {\ncase 1: {}\n}\nq()\nfor (a; function f() {}; ) {}\nr()\no = { if() {} }\ns()\n", "x=y\nfunction f(){}\nz()\nswitch(a){case 1:{}}\nq()\nfor(a;function f(){};){}r()\no={if(){}}\ns()\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Minify(tt.src); got != tt.want {
				t.Errorf("Minify(%q)\n got %q\nwant %q", tt.src, got, tt.want)
			}
		})
	}
}

// TestMinifyRefuses checks that Minify panics, rather than changing the
// script, on what it cannot minify.
func TestMinifyRefuses(t *testing.T) {
	tests := []struct{ name, src string }{
		{"template literal", "s = `a  b`;\n"},
		{"comment after code", "f(a, // the first\n  b);\n"},
		{"slash after )", "if (x) /a/.test(y);\n"},
		{"slash after }", "function f() {} /a/.test(y);\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Minify(%q) did not panic", tt.src)
				}
			}()
			t.Errorf("Minify(%q) = %q, want a panic", tt.src, Minify(tt.src))
		})
	}
}

// TestLimitsKeepAHitWhole: the tracker cuts each field it sends to its own
// limit (lim in tracker.js), so that a hit with every field at its largest
// is within collection's limit of a hit, its names and values: a hit over
// it is refused, and a beacon's refusal is never seen.
func TestLimitsKeepAHitWhole(t *testing.T) {
	m := regexp.MustCompile(`lim = \{([^}]*)\}`).FindStringSubmatch(source)
	if m == nil {
		t.Fatal("no lim = {...} in tracker.js")
	}
	size := 0
	for _, kv := range strings.Split(m[1], ",") {
		name, v, _ := strings.Cut(strings.TrimSpace(kv), ":")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			t.Fatalf("lim: %q", kv)
		}
		size += len(name) + n
	}
	// The other fields at their largest: those collection bounds at its
	// own limits (sr 20, ul 35), the others as the tracker makes them.
	for name, max := range map[string]int{"v": 1, "t": len("engagement"), "hid": 16, "cid": 32, "sr": 20, "ul": 35,
		"ev": len("-123456789012345.67"), "ni": 1, "et": len("86400000"), "qt": len("100000")} {
		size += len(name) + max
	}
	if size > parse.MaxHitBytes {
		t.Fatalf("a hit of the tracker can reach %d bytes, over collection's %d: lower lim", size, parse.MaxHitBytes)
	}
	t.Logf("the largest hit of the tracker: %d bytes of %d", size, parse.MaxHitBytes)
}
