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
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for _, q := range queues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range q {
				n := int64(len(req))
				for c := 0; c < req[0].Copies; c++ {
					code, rejected, err := sendRetrying(ctx, client, m, plan, req, start)
					atomic.AddInt64(&res.Sent, n)
					switch {
					case err != nil && ctx.Err() != nil:
						// Cut short by the end of the play: not sent.
						atomic.AddInt64(&res.Sent, -n)
					case err != nil:
						atomic.AddInt64(&res.Failed, n)
						firstErr.CompareAndSwap(nil, err)
					case code/100 == 2 && !rejected:
						atomic.AddInt64(&res.Accepted, n)
					default:
						atomic.AddInt64(&res.Rejected, n)
					}
				}
			}
		}()
	}
	for i := 0; i < len(plan.Hits); {
		h := plan.Hits[i]
		j := i + 1
		for j < len(plan.Hits) && plan.Hits[j-1].WithNext {
			j++
		}
		req := plan.Hits[i:j:j]
		i = j
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

// sendRetrying sends a request until it is answered by something other
// than 503 or a connection failure, for up to a minute, as a tracker
// keeping its queue would: a hit refused because the stack is restarting a
// part was not accepted, so sending it again cannot count it twice.
func sendRetrying(ctx context.Context, client *http.Client, m *Merchant, plan *Plan, req []Hit, start time.Time) (int, bool, error) {
	deadline := time.Now().Add(time.Minute)
	backoff := 100 * time.Millisecond
	for {
		code, rejected, err := send(ctx, client, m, plan, req, start)
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

// send sends one request, a hit as a pixel or several as a JSON batch, and
// returns the status code and whether collection rejected a hit (the pixel
// answers an image either way, and names a rejection in X-Collect-Error; a
// batch is answered 204 only when every hit was stored).
// The plan's clock is mapped to real time with the plan's End at the
// moment the play started: a hit's queue time is how long before End it
// happened plus how long the play has been running. The hits of a batch
// share that reading of the clock, as they share their receive time, so
// the gaps between them are dated exactly.
func send(ctx context.Context, client *http.Client, m *Merchant, plan *Plan, req []Hit, start time.Time) (int, bool, error) {
	tid := m.TrackingID
	if req[0].Malformed == "unknown_tracking_id" {
		tid = UnknownTrackingID
	}
	since := time.Since(start)
	qt := func(h Hit) string { return strconv.FormatInt((plan.Config.End.Sub(h.At) + since).Milliseconds(), 10) }
	var r *http.Request
	var err error
	if len(req) == 1 {
		r, err = http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/collect?%s&tid=%s&qt=%s", m.Gateway, req[0].Params.Encode(), tid, qt(req[0])), nil)
	} else {
		var body []byte
		body, err = batchBody(req, qt)
		if err == nil {
			r, err = http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("%s/collect?tid=%s", m.Gateway, tid), bytes.NewReader(body))
		}
	}
	if err != nil {
		return 0, false, err
	}
	r.Header.Set("User-Agent", req[0].UA)
	r.Header.Set("X-Forwarded-For", req[0].IP)
	resp, err := client.Do(r)
	if err != nil {
		return 0, false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if len(req) > 1 {
		return resp.StatusCode, resp.StatusCode != http.StatusNoContent, nil
	}
	return resp.StatusCode, resp.Header.Get("X-Collect-Error") != "", nil
}

// batchBody encodes hits as the body of POST /collect, each with its
// queue time, as a tracker sends it (JSON.stringify escapes no & or <).
func batchBody(hits []Hit, qt func(Hit) string) ([]byte, error) {
	out := make([]map[string]string, len(hits))
	for i, h := range hits {
		o := make(map[string]string, len(h.Params)+1)
		for k := range h.Params {
			o[k] = h.Params.Get(k)
		}
		o["qt"] = qt(h)
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
