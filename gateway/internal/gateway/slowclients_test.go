package gateway_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSlowClientsAreNotTheInstancesFault: a client that sends its body
// slowly, or stops sending it, is answered 408 when the route's time is
// up (the limit covers reading the body: a stalled one held the request
// for the server's 30 s ReadTimeout), and neither it nor a client reading
// a large answer slowly counts against the instance: a few of either
// opened a healthy instance's breaker, and every hit (which needs no
// account to send) was then refused with 503.
func TestSlowClientsAreNotTheInstancesFault(t *testing.T) {
	live := newUpstream(t, "collection")
	g := startGateway(t, "-consul-addr=", "-static-upstreams=collection="+live.addr(),
		"-hit-rate=0", "-breaker-failures=3", "-breaker-open-timeout=1m", "-collect-timeout=500ms")
	addr := strings.TrimPrefix(g.url, "http://")
	for name, trickle := range map[string]bool{"a body sent slowly": true, "a body that stops": false} {
		answers := make([]string, 3)
		onConnections(t, addr, len(answers), func(i int, c net.Conn) {
			// 10 of the 100 bytes it declares, then a byte every 100 ms
			// or none.
			_, _ = c.Write([]byte("POST /collect?tid=AT-1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nv=2&tid=AT"))
			if trickle {
				go func() {
					for range 90 {
						time.Sleep(100 * time.Millisecond)
						if _, err := c.Write([]byte("x")); err != nil {
							return
						}
					}
				}()
			}
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			line, _ := bufio.NewReader(c).ReadString('\n')
			if time.Since(start) > 10*time.Second {
				line += " (after " + time.Since(start).String() + ")"
			}
			answers[i] = strings.TrimSpace(line)
		})
		for _, a := range answers {
			if a != "HTTP/1.1 408 Request Timeout" {
				t.Errorf("%s: answered %q, want 408 when the route's time is up", name, a)
			}
		}
		if r := do(t, g.request(t, http.MethodPost, "/collect?tid=AT-2", strings.NewReader("v=2&tid=AT-2&en=page_view"))); r.status != http.StatusOK {
			t.Fatalf("%s: a hit after three of them: %d %s, want the instance still in use", name, r.status, r.errorCode())
		}
	}
}

// TestSlowReadersAreNotTheInstancesFault: clients reading a large answer
// so slowly that the route's time runs out while the gateway waits to
// write it are excluded from the instance's breaker.
func TestSlowReadersAreNotTheInstancesFault(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 64<<20)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("small") != "" {
			_, _ = w.Write([]byte(`{}`))
			return
		}
		_, _ = w.Write(big)
	}))
	t.Cleanup(up.Close)
	g := startGateway(t, "-consul-addr=", "-static-upstreams=collection="+up.Listener.Addr().String(),
		"-hit-rate=0", "-breaker-failures=3", "-breaker-open-timeout=1m", "-collect-timeout=1s")
	addr := strings.TrimPrefix(g.url, "http://")
	onConnections(t, addr, 3, func(_ int, c net.Conn) {
		_, _ = c.Write([]byte("GET /tracker/big.js HTTP/1.1\r\nHost: x\r\n\r\n"))
		time.Sleep(2500 * time.Millisecond) // a slow link: nothing read
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, c)
	})
	if r := do(t, g.request(t, http.MethodGet, "/tracker/x.js?small=1", nil)); r.status != http.StatusOK {
		t.Fatalf("a request after three slow readers: %d %s, want the instance still in use", r.status, r.errorCode())
	}
	resp, err := http.Get(g.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `gateway_upstream_requests_total{outcome="excluded",upstream="collection"} 3`) {
		t.Errorf("the slow readers' requests are not counted as excluded:\n%s", grepLines(string(b), "gateway_upstream_requests_total"))
	}
}

// onConnections runs fn on n connections to addr at once, each its own,
// and returns when every one has.
func onConnections(t *testing.T, addr string, n int, fn func(i int, c net.Conn)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			fn(i, c)
		})
	}
	wg.Wait()
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
