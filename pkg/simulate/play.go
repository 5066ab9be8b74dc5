package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// UnknownTrackingID is a well-formed tracking ID no property has.
const UnknownTrackingID = "AT-ZZZZZZZZZZ"

// Result counts the hits a play sent and how collection answered.
type Result struct {
	Sent, Accepted, Rejected, Failed int64
	// Started is when the play started. The plan's End maps to it: hits
	// are dated Started-End later than planned, so the plan that says what
	// the reports must show is p.Rebased(Started).
	Started time.Time
	// MaxLatency is the longest a request that was answered took, from
	// the clock reading its queue times were computed at to its answer:
	// collection dates a hit by its receipt less its queue time, so a hit
	// is dated up to that much later than planned.
	MaxLatency time.Duration
}

// Play sends the plan's hits to collection through the gateway, in order
// of their send time compressed into about duration, each with the queue
// time that makes collection date it to its planned time. A hit goes as a
// pixel request, or with the hits after it that it is sent with
// (Hit.WithNext) as a JSON batch. Copies are sent again; malformed hits
// are sent as planned. It uses up to workers concurrent requests; hits of
// one visitor are sent in order.
func Play(ctx context.Context, client *http.Client, m *Merchant, plan *Plan, duration time.Duration, workers int) (Result, error) {
	if len(plan.Hits) == 0 {
		return Result{}, nil
	}
	first, last := plan.Hits[0].Send, plan.Hits[len(plan.Hits)-1].Send
	span := last.Sub(first)
	start := time.Now()
	res := Result{Started: start}
	// Each visitor's requests go to one worker, in order.
	queues := make([]chan []Hit, workers)
	for i := range queues {
		queues[i] = make(chan []Hit, 64)
	}
	// The plan's clock is mapped to real time with the plan's End at the
	// moment the play started: a hit's queue time is how long before End
	// it happened plus how long the play has been running.
	qt := func(h Hit, now time.Time) time.Duration { return plan.Config.End.Sub(h.At) + now.Sub(start) }
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for _, q := range queues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range q {
				if err := res.send(ctx, client, m, req, qt); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for i := 0; i < len(plan.Hits); {
		h := plan.Hits[i]
		var req []Hit
		req, i = nextRequest(plan.Hits, i)
		if span > 0 && duration > 0 {
			sleepUntil(ctx, start.Add(time.Duration(float64(h.Send.Sub(first))/float64(span)*float64(duration))))
		}
		if ctx.Err() != nil {
			break
		}
		queues[int(hashString(h.Params.Get("cid"))%uint32(workers))] <- req
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil && res.Failed > 0 {
		return res, fmt.Errorf("%d of %d hits failed; first: %w", res.Failed, res.Sent, err)
	}
	return res, ctx.Err()
}

// nextRequest returns the hits from hits[i] that go in one request: a hit
// and those after it that it is sent with (Hit.WithNext); and the index
// of the next request's first hit.
func nextRequest(hits []Hit, i int) ([]Hit, int) {
	j := i + 1
	for j < len(hits) && hits[j-1].WithNext {
		j++
	}
	return hits[i:j:j], j
}

// queueTime says how long before now, the moment its request is sent, a
// hit happened: the queue time it is sent with, which collection dates it
// by. Without one (nil) hits are sent as they happen, and collection dates
// them when it receives them.
type queueTime func(h Hit, now time.Time) time.Duration

// send sends req as many times as it is planned to be (Copies), each
// waiting out a stack that restarts a part (sendRetrying), and counts how
// collection answered in res, which may be shared by concurrent senders.
// It returns the error of a request that failed for good. A request cut
// short by the end of ctx is not counted.
func (res *Result) send(ctx context.Context, client *http.Client, m *Merchant, req []Hit, qt queueTime) error {
	n := int64(len(req))
	var failed error
	for c := 0; c < req[0].Copies; c++ {
		code, rejected, took, err := sendRetrying(ctx, client, m, req, qt)
		if err == nil {
			for old := atomic.LoadInt64((*int64)(&res.MaxLatency)); int64(took) > old; old = atomic.LoadInt64((*int64)(&res.MaxLatency)) {
				if atomic.CompareAndSwapInt64((*int64)(&res.MaxLatency), old, int64(took)) {
					break
				}
			}
		}
		switch {
		case err != nil && ctx.Err() != nil:
			continue
		case err != nil:
			atomic.AddInt64(&res.Failed, n)
			if failed == nil {
				failed = err
			}
		case code/100 == 2 && !rejected:
			atomic.AddInt64(&res.Accepted, n)
		default:
			atomic.AddInt64(&res.Rejected, n)
		}
		atomic.AddInt64(&res.Sent, n)
	}
	return failed
}

// sendRetrying sends a request until it is answered by something other
// than 503 or a connection failure, for up to a minute, as a tracker
// keeping its queue would: a hit refused because the stack is restarting a
// part was not accepted, so sending it again cannot count it twice.
func sendRetrying(ctx context.Context, client *http.Client, m *Merchant, req []Hit, qt queueTime) (int, bool, time.Duration, error) {
	deadline := time.Now().Add(time.Minute)
	backoff := 100 * time.Millisecond
	for {
		code, rejected, took, err := sendOnce(ctx, client, m, req, qt)
		if (err == nil && code != http.StatusServiceUnavailable && code != http.StatusBadGateway) || time.Now().After(deadline) || ctx.Err() != nil {
			return code, rejected, took, err
		}
		sleepUntil(ctx, time.Now().Add(backoff))
		backoff = min(2*backoff, 2*time.Second)
	}
}

// sendOnce sends one request, a hit as a pixel or several as a JSON
// batch, and returns the status code and whether collection rejected a hit
// (the pixel answers an image either way, and names a rejection in
// X-Collect-Error; a batch is answered 204 only when every hit was
// stored), and how long it took from the reading of the clock its queue
// times were computed at. The hits of a batch share one reading of the
// clock for their queue times, as they share their receive time, so the
// gaps between them are dated exactly.
func sendOnce(ctx context.Context, client *http.Client, m *Merchant, req []Hit, qt queueTime) (int, bool, time.Duration, error) {
	tid := m.TrackingID
	if req[0].Malformed == "unknown_tracking_id" {
		tid = UnknownTrackingID
	}
	now := time.Now()
	queued := func(h Hit) string {
		if qt == nil {
			return ""
		}
		return strconv.FormatInt(qt(h, now).Milliseconds(), 10)
	}
	var r *http.Request
	var err error
	if len(req) == 1 {
		q := "tid=" + tid
		if s := queued(req[0]); s != "" {
			q += "&qt=" + s
		}
		r, err = http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/collect?%s&%s", m.Gateway, req[0].Params.Encode(), q), nil)
	} else {
		var body []byte
		body, err = batchBody(req, queued)
		if err == nil {
			r, err = http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("%s/collect?tid=%s", m.Gateway, tid), bytes.NewReader(body))
		}
	}
	if err != nil {
		return 0, false, 0, err
	}
	r.Header.Set("User-Agent", req[0].UA)
	r.Header.Set("X-Forwarded-For", req[0].IP)
	resp, err := client.Do(r)
	if err != nil {
		return 0, false, 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(now)
	if len(req) > 1 {
		return resp.StatusCode, resp.StatusCode != http.StatusNoContent, took, nil
	}
	return resp.StatusCode, resp.Header.Get("X-Collect-Error") != "", took, nil
}

// sleepUntil waits until t or the end of ctx, whichever comes first.
func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// batchBody encodes hits as the body of POST /collect, each with its
// queue time if it has one, as a tracker sends it (JSON.stringify escapes
// no & or <).
func batchBody(hits []Hit, qt func(Hit) string) ([]byte, error) {
	out := make([]map[string]string, len(hits))
	for i, h := range hits {
		o := make(map[string]string, len(h.Params)+1)
		for k := range h.Params {
			o[k] = h.Params.Get(k)
		}
		if s := qt(h); s != "" {
			o["qt"] = s
		}
		out[i] = o
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"hits": out}); err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	return b.Bytes(), nil
}

func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
