package simulate

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// UnknownTrackingID is a well-formed tracking ID no property has.
const UnknownTrackingID = "AT-ZZZZZZZZZZ"

// Result counts what a play sent and how collection answered.
type Result struct {
	Sent, Accepted, Rejected, Failed int64
	// Started is when the play started. The plan's End maps to it: hits
	// are dated Started-End later than planned, so the plan that says what
	// the reports must show is p.Rebased(Started).
	Started time.Time
}

// Play sends the plan's hits to collection through the gateway, in order
// of their send time compressed into about duration, each with the queue
// time that makes collection date it to its planned time. Copies are sent
// again; malformed hits are sent as planned. It uses up to workers
// concurrent requests; hits of one visitor are sent in order.
func Play(ctx context.Context, client *http.Client, m *Merchant, plan *Plan, duration time.Duration, workers int) (Result, error) {
	if len(plan.Hits) == 0 {
		return Result{}, nil
	}
	first, last := plan.Hits[0].Send, plan.Hits[len(plan.Hits)-1].Send
	span := last.Sub(first)
	start := time.Now()
	res := Result{Started: start}
	// Each visitor's hits go to one worker, in order.
	queues := make([]chan Hit, workers)
	for i := range queues {
		queues[i] = make(chan Hit, 64)
	}
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for _, q := range queues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range q {
				for c := 0; c < h.Copies; c++ {
					code, rejectedPixel, err := sendRetrying(ctx, client, m, plan, h, start)
					atomic.AddInt64(&res.Sent, 1)
					switch {
					case err != nil && ctx.Err() != nil:
						// Cut short by the end of the play: not sent.
						atomic.AddInt64(&res.Sent, -1)
					case err != nil:
						atomic.AddInt64(&res.Failed, 1)
						firstErr.CompareAndSwap(nil, err)
					case code/100 == 2 && !rejectedPixel:
						atomic.AddInt64(&res.Accepted, 1)
					default:
						atomic.AddInt64(&res.Rejected, 1)
					}
				}
			}
		}()
	}
	for _, h := range plan.Hits {
		if span > 0 && duration > 0 {
			due := start.Add(time.Duration(float64(h.Send.Sub(first)) / float64(span) * float64(duration)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		queues[int(hashString(h.Params.Get("cid"))%uint32(workers))] <- h
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil && res.Failed > 0 {
		return res, fmt.Errorf("%d of %d requests failed; first: %w", res.Failed, res.Sent, err)
	}
	return res, ctx.Err()
}

// sendRetrying sends a hit until it is answered by something other than
// 503 or a connection failure, for up to a minute, as a tracker keeping its
// queue would: a hit refused because the stack is restarting a part was not
// accepted, so sending it again cannot count it twice.
func sendRetrying(ctx context.Context, client *http.Client, m *Merchant, plan *Plan, h Hit, start time.Time) (int, bool, error) {
	deadline := time.Now().Add(time.Minute)
	backoff := 100 * time.Millisecond
	for {
		code, rejected, err := send(ctx, client, m, plan, h, start)
		if (err == nil && code != http.StatusServiceUnavailable && code != http.StatusBadGateway) || time.Now().After(deadline) || ctx.Err() != nil {
			return code, rejected, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// send sends one hit as a pixel request and returns the status code and
// whether collection rejected it (the pixel answers an image either way,
// and names a rejection in X-Collect-Error).
// The plan's clock is mapped to real time with the plan's End at the
// moment the play started: a hit's queue time is how long before End it
// happened plus how long the play has been running.
func send(ctx context.Context, client *http.Client, m *Merchant, plan *Plan, h Hit, start time.Time) (int, bool, error) {
	q := h.Params
	tid := m.TrackingID
	if h.Malformed == "unknown_tracking_id" {
		tid = UnknownTrackingID
	}
	qt := plan.Config.End.Sub(h.At) + time.Since(start)
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/collect?%s&tid=%s&qt=%d", m.Gateway, q.Encode(), tid, qt.Milliseconds()), nil)
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("User-Agent", h.UA)
	req.Header.Set("X-Forwarded-For", h.IP)
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Collect-Error") != "", nil
}

func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
