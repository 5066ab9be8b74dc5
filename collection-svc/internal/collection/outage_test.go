package collection

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBrokerDownAnswers503AndRecovers cuts the broker off (every request
// to it drops the connection), checks that requests are answered 503
// within the produce timeout and then at once, and that collection
// recovers by itself when the broker comes back: it is ready again without
// a request to try the broker, and takes hits.
func TestBrokerDownAnswers503AndRecovers(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	e := newEnv(t, envOptions{produceTimeout: timeout})
	var down atomic.Bool
	e.cluster.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		if down.Load() {
			return nil, errors.New("broker down (test)"), true
		}
		return nil, nil, false
	})

	send := func(hid string) (int, time.Duration) {
		body := fmt.Sprintf(`{"hits":[{"cid":"c-outage","t":"pageview","dl":"https://shop.example/","hid":%q}]}`, hid)
		start := time.Now()
		resp, _ := e.do("POST", "/collect?tid="+tidShop, "text/plain", body, "203.0.113.7", "")
		return resp.StatusCode, time.Since(start)
	}
	if status, _ := send("before"); status != 204 {
		t.Fatalf("before the outage: status %d", status)
	}

	down.Store(true)
	for i := range 3 {
		status, took := send(fmt.Sprintf("during-%d", i))
		if status != 503 {
			t.Fatalf("request %d during the outage: status %d, want 503", i, status)
		}
		if took > timeout+time.Second {
			t.Fatalf("request %d during the outage took %v; the limit is %v", i, took, timeout)
		}
	}
	// Once the producer has given up on a message, the circuit is open:
	// requests are refused without waiting, except one probe at a time,
	// which waits for the broker. So of requests sent together, all but
	// the probe are answered at once (sent one after another, each would
	// be the probe).
	cut := time.Now()
	eventually.NoError(t, 20*time.Second, "503s answered at once", func() error {
		var fast atomic.Int32
		var last atomic.Int64
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, took := send(fmt.Sprintf("fast-%d", i))
				last.Store(int64(took))
				if status == 503 && took < 100*time.Millisecond {
					fast.Add(1)
				}
			}()
		}
		wg.Wait()
		if fast.Load() == 0 {
			return fmt.Errorf("a request took %v", time.Duration(last.Load()))
		}
		return nil
	})

	t.Logf("circuit open after %v", time.Since(cut))
	down.Store(false)
	restored := time.Now()
	defer func() { t.Logf("recovered after %v", time.Since(restored)) }()
	// Nothing is sent until the instance says it is ready again: behind
	// the gateway an unready instance gets no request (Consul's check is
	// /readyz), so it must find out by itself that the broker is back.
	eventually.NoError(t, 30*time.Second, "collection ready again after the broker came back, with no request to try it", e.parts.Producer.Healthy)
	var recovered string
	i := 0
	eventually.True(t, 30*time.Second, "collection taking hits again after the broker came back", func() bool {
		hid := fmt.Sprintf("after-%d", i)
		i++
		if status, _ := send(hid); status != 204 {
			return false
		}
		recovered = hid
		return true
	})
	hits := e.read(hit.TopicHits)
	hits.waitFor(t, 1, hasHID("before"))
	hits.waitFor(t, 1, hasHID(recovered))
	if err := e.parts.Producer.Healthy(); err != nil {
		t.Fatalf("producer still unhealthy after recovery: %v", err)
	}
}
