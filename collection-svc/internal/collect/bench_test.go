package collect

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/collection-svc/internal/benchdata"
	"github.com/acme/analytics/collection-svc/internal/device"
	"github.com/acme/analytics/collection-svc/internal/geoip"
	"github.com/acme/analytics/collection-svc/internal/geoip/geoiptest"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkHandle measures collection's own work per hit of a batch of 20
// hits as tracker.js sends them: reading and parsing the body, validating
// and enriching the hits, encoding them into records and the producer's
// messages. It is BenchmarkLoad's handler (package collection) without the
// network, the HTTP server, the producer and the broker, which take most
// of that benchmark's CPU; it varies a few percent from run to run where
// BenchmarkLoad varies ±15% on this machine, so use it to see what a
// change to this path does.
func BenchmarkHandle(b *testing.B) {
	var queued int
	s, p := testServer(b, 16, countingQueue{&queued})
	const hitsPerBatch = 20
	bodies := benchdata.Batches(256, hitsPerBatch)
	w := &discardResponse{header: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req := httptest.NewRequest(http.MethodPost, "/collect?tid="+p.TrackingID, bytes.NewReader(bodies[i%len(bodies)]))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		req.Header.Set("User-Agent", benchdata.UserAgent)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		clear(w.header)
		w.status = 0
		s.batch(w, req)
		if w.status != http.StatusNoContent {
			b.Fatalf("status %d", w.status)
		}
	}
	b.StopTimer()
	if queued != b.N {
		b.Fatalf("%d records queued for %d requests", queued, b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*hitsPerBatch), "ns/hit")
}

// testServer returns a collection server for a property of shards
// processing shards and the hosts of rules.Defaults() plus shop.example,
// queueing to q, behind a trusted proxy at 127.0.0.1; any dead letter
// fails the test.
func testServer(tb testing.TB, shards int, q Queue) (*Server, *Property) {
	tb.Helper()
	return testServerWith(tb, shards, q, failOnDeadLetter{tb})
}

// testServerWith is testServer sending dead letters to dl; the property
// reports in EUR and accepts the Measurement API secret "secret".
func testServerWith(tb testing.TB, shards int, q Queue, dl DeadLetters) (*Server, *Property) {
	tb.Helper()
	r, err := rules.Compile(rules.Defaults(), 1, []string{"shop.example"})
	if err != nil {
		tb.Fatal(err)
	}
	geo, err := geoip.Open(geoiptest.Write(tb, map[string]string{"203.0.113.0/24": "DE"}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { geo.Close() })
	p := &Property{ID: "p", TenantID: "t", TrackingID: "AT-SHPSHPSHP2", Currency: "EUR", Shards: shards, Rules: r,
		VerifySecret: func(s string) bool { return s == "secret" }}
	s := New(Config{
		Properties:     staticProperties{p},
		Queue:          q,
		DeadLetters:    dl,
		GeoIP:          geo,
		Devices:        device.NewParser(1000),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry:       prometheus.NewRegistry(),
	})
	return s, p
}

type staticProperties struct{ p *Property }

func (s staticProperties) ByTrackingID(_ context.Context, tid string) (*Property, error) {
	if tid != s.p.TrackingID {
		return nil, ErrUnknownTrackingID
	}
	return s.p, nil
}

// countingQueue stands in for the producer, which BenchmarkLoad measures:
// it counts the messages and drops them.
type countingQueue struct{ n *int }

func (q countingQueue) Send(_ context.Context, msgs []*sarama.ProducerMessage, _ int) error {
	*q.n += len(msgs)
	return nil
}

type failOnDeadLetter struct{ tb testing.TB }

func (f failOnDeadLetter) Add(dl hit.DeadLetter) { f.tb.Fatalf("dead letter: %+v", dl) }

type discardResponse struct {
	header http.Header
	status int
}

func (d *discardResponse) Header() http.Header         { return d.header }
func (d *discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardResponse) WriteHeader(status int)      { d.status = status }
