package collect

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/acme/analytics/collection-svc/internal/parse"
)

// TestRejectedEventsCostTheirLetters: a rejected Measurement API event's
// dead letter is the request's other fields and the event, at most 16 KiB.
// It was built whole for every rejected event while parsing, before the
// secret's check: one anonymous request of 500 bad events beside a field
// of 500 KiB allocated about 500 MiB, and with the secret its letters kept
// about 250 MiB alive in the buffer (each a slice of its whole string).
func TestRejectedEventsCostTheirLetters(t *testing.T) {
	ev := make([]string, 500)
	for i := range ev {
		ev[i] = `{"name":"9bad"}`
	}
	body := `{"client_id":"c1","user_properties":{"x":{"value":"` + strings.Repeat("A", 500<<10) +
		`"}},"events":[` + strings.Join(ev, ",") + `]}`
	for _, tt := range []struct {
		secret  string
		status  int
		letters int
	}{{"wrong", http.StatusForbidden, 1}, {"secret", http.StatusBadRequest, 500}} {
		t.Run("api_secret="+tt.secret, func(t *testing.T) {
			var dead deadLetters
			s, p := testServerWith(t, 4, countingQueue{new(int)}, &dead)
			mux := http.NewServeMux()
			s.Register(mux)
			req := httptest.NewRequest(http.MethodPost, "/mp/collect?tracking_id="+p.TrackingID+"&api_secret="+tt.secret, strings.NewReader(body))
			req.RemoteAddr = "203.0.113.7:5000"
			w := httptest.NewRecorder()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			mux.ServeHTTP(w, req)
			runtime.GC()
			runtime.ReadMemStats(&after)
			if w.Code != tt.status || len(dead) != tt.letters {
				t.Fatalf("status %d, %d dead letters; want %d, %d", w.Code, len(dead), tt.status, tt.letters)
			}
			for _, d := range dead {
				if len(d.Payload) > parse.MaxRawBytes {
					t.Fatalf("a dead letter of %d bytes", len(d.Payload))
				}
			}
			const bound = 32 << 20 // the body several times over, and 500 letters of 16 KiB
			if allocated := after.TotalAlloc - before.TotalAlloc; allocated > bound {
				t.Errorf("one request of %d KiB allocated %d MiB", len(body)>>10, allocated>>20)
			}
			if kept := int64(after.HeapAlloc) - int64(before.HeapAlloc); kept > bound {
				t.Errorf("its dead letters keep %d MiB alive", kept>>20)
			}
			runtime.KeepAlive(dead)
		})
	}
}
