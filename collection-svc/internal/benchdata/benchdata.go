// Package benchdata makes the traffic collection's benchmarks send: batches
// as tracker.js sends them to POST /collect, so that the benchmark of the
// handler alone (BenchmarkHandle) and the one over the network
// (BenchmarkLoad) measure the same hits.
package benchdata

import (
	"bytes"
	"fmt"
	"time"
)

// Batches returns count distinct JSON batches of n pageviews each. A
// batch is one visitor's; every hit has its own client event ID, distinct
// across calls too.
func Batches(count, n int) [][]byte {
	out := make([][]byte, count)
	run := time.Now().UnixNano() & 0xffffffff
	for i := range out {
		var b bytes.Buffer
		b.WriteString(`{"hits":[`)
		for j := range n {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"v":1,"t":"pageview","cid":"%08x","hid":"%04x%04x%08x","dl":"https://shop.example/products/item-%d?utm_source=news","dt":"Product %d","dr":"https://www.google.com/","sr":"1920x1080","ul":"en-US"}`,
				i*7919, i, j, run, j, i)
		}
		b.WriteString("]}")
		out[i] = b.Bytes()
	}
	return out
}

// UserAgent is the browser the batches come from.
const UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
