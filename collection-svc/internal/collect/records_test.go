package collect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
)

// The records of a request the broker did not acknowledge may still be
// sent by the producer later (a timeout), so the requests after it must
// not write theirs in the same memory; those of acknowledged requests may.
func TestUnacknowledgedRecordsKeepTheirMemory(t *testing.T) {
	q := &holdingQueue{fail: true}
	s, p := testServer(t, 1, q)
	send := func(client string, hits int) int {
		var b strings.Builder
		for i := range hits {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"cid":%q,"t":"pageview","dl":"https://shop.example/%s/%d","hid":"%s-%d"}`, client, client, i, client, i)
		}
		req := httptest.NewRequest(http.MethodPost, "/collect?tid="+p.TrackingID, strings.NewReader(`{"hits":[`+b.String()+`]}`))
		req.RemoteAddr = "203.0.113.9:40000"
		w := httptest.NewRecorder()
		s.batch(w, req)
		return w.Code
	}

	if status := send("refused", 20); status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", status)
	}
	held := q.msgs
	var want []string
	for _, m := range held {
		v, _ := m.Value.Encode()
		want = append(want, string(v))
	}
	q.fail = false
	for i := range 20 {
		if status := send(fmt.Sprint("later-", i), 20); status != http.StatusNoContent {
			t.Fatalf("status %d, want 204", status)
		}
	}
	for i, m := range held {
		if v, _ := m.Value.Encode(); string(v) != want[i] {
			t.Fatalf("a record the producer may still send was overwritten by a later request")
		}
		hits, err := hit.SplitRecord(must(m.Value.Encode()))
		if err != nil || len(hits) != 20 {
			t.Fatalf("the held record: %d hits, %v", len(hits), err)
		}
	}
}

// holdingQueue keeps what it is sent, as a producer does until the broker
// acknowledges, and refuses it while fail is set.
type holdingQueue struct {
	fail bool
	msgs []*sarama.ProducerMessage
}

func (q *holdingQueue) Send(_ context.Context, msgs []*sarama.ProducerMessage, _ int) error {
	q.msgs = msgs
	if q.fail {
		return errors.New("not acknowledged in time (test)")
	}
	return nil
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
