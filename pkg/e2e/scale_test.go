package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/localstack"
	"github.com/acme/analytics/pkg/simulate"
)

// scaleShards is the processing shard count of the scaling test's
// property: its visitors spread over that many keys, so over most of the
// hits topic's partitions and every processor's share of them (a property
// of one shard lands in one partition, docs/operations.md).
const scaleShards = 24

// TestAcceptanceScaling plays the plan while processing goes from one
// instance to two and three (each join rebalances the consumer group while
// visitors are mid-session), then one stops (SIGTERM) and one is killed
// (SIGKILL), leaving one; meanwhile a second acquisition and behavior
// instance is added and the first of each stopped, while reports are read
// through the gateway throughout. Every number must still match exactly,
// as in TestAcceptance, and every report read must be answered.
func TestAcceptanceScaling(t *testing.T) {
	// The drain delay deploy/ gives every service (3 s, where the flag's
	// default is 1 s): an instance stopped keeps serving that long after
	// leaving Consul, for the gateway to stop sending it requests, which a
	// loaded 2-core machine may take longer than a second to do. And a
	// report's reads get 5 s where production's default is 1 s: this test
	// is about instances coming and going, not about how fast the machine
	// is, and a read past its limit would answer stale.
	stack, cfg := startStack(t, "DRAIN_DELAY=3s", "STORE_TIMEOUT=5s")
	visitors, play := size(t)
	// Four changes of the group's membership and a swap of the report
	// instances, each with traffic before and after it.
	play = max(play, 40*time.Second)
	var m *simulate.Merchant
	run(t, stack, cfg, visitors, play, variant{
		setUp: func(ctx context.Context, merchant *simulate.Merchant) {
			m = merchant
			setShards(t, stack, cfg, m.PropertyID, scaleShards)
			if n := len(groupAssignment(t, cfg)); n != 1 {
				t.Fatalf("the processing group has %d members before scaling, want 1", n)
			}
		},
		faults: func(ctx context.Context) {
			reads := readReportsThroughout(ctx, t, m)
			scale(ctx, t, stack, cfg, play, reads)
			reads.wait()
		},
	})
}

// scale is the scaling test's schedule: each step at its point of the
// play or, when the steps before it took longer, right after them. It
// fails the test if the traffic ends before the schedule does.
func scale(ctx context.Context, t *testing.T, stack *localstack.Stack, cfg localstack.Config, play time.Duration, reads *reportReads) {
	start := time.Now()
	at := func(fraction float64, what string) bool {
		select {
		case <-ctx.Done():
			t.Errorf("the traffic ended (after %s) before %s; raise E2E_DURATION", time.Since(start).Round(time.Second), what)
			return false
		case <-time.After(time.Until(start.Add(time.Duration(fraction * float64(play))))):
			t.Logf("scale: %s at %s of the play", what, time.Since(start).Round(100*time.Millisecond))
			return true
		}
	}
	add := func(service string) string {
		name, err := stack.Add(context.WithoutCancel(ctx), service)
		if err != nil {
			t.Fatalf("add a %s instance: %v", service, err)
		}
		return name
	}
	for i, n := range []int{2, 3} {
		if !at([]float64{0.1, 0.2}[i], fmt.Sprintf("processing instance %d joins", n)) {
			return
		}
		name := add("processing")
		t.Logf("scale: %s started", name)
		waitGroupMembers(t, cfg, n)
	}

	if !at(0.3, "the report instances are swapped") {
		return
	}
	gateway := func() metrics { return scrape(t, stack.GatewayMetricsURL()) }
	known := func(service string, n int) {
		eventually.True(t, 20*time.Second, fmt.Sprintf("the gateway knows %d %s instances", n, service), func() bool {
			return gateway().sumWith("gateway_upstream_instances", `upstream="`+service+`"`) == float64(n)
		})
	}
	for _, service := range []string{"acquisition", "behavior"} {
		name := add(service)
		addr, err := stack.InstanceAddr(name)
		if err != nil {
			t.Fatal(err)
		}
		// The gateway discovers it through Consul and sends it reports.
		known(service, 2)
		eventually.NoError(t, 20*time.Second, "the gateway routes reports to "+name, func() error {
			if n := scrape(t, "http://"+addr+"/metrics").sumWith("http_requests_total", `route="GET /v1/reports/`, `code="200"`); n == 0 {
				return fmt.Errorf("%s has answered no report", name)
			}
			return nil
		})
		t.Logf("scale: %s serves reports; SIGTERM %s", name, service)
		must(t, stack.Terminate(service))
		// Dropped when it left Consul, before it closed its listener
		// (its drain delay): no request met it closed, so none was
		// retried on another instance or failed.
		known(service, 1)
		g := gateway()
		if failed, retried := g.sumWith("gateway_upstream_requests_total", `upstream="`+service+`"`, `outcome="failure"`),
			g.sumWith("gateway_upstream_retries_total", `upstream="`+service+`"`); failed+retried > 0 {
			t.Errorf("the gateway's requests to %s while an instance came and one went: %.0f failed, %.0f retried; want none", service, failed, retried)
		}
	}
	reads.mark()

	// Every processor took part: it applied hits of the partitions it
	// was given. The first, alone at first with every partition, was
	// never given one again: the joins only took some of its partitions,
	// and those it kept were never revoked (the cooperative protocol,
	// where the eager one would have had it claim its share again at
	// each join).
	partitions := topicPartitions(t, cfg)
	for i, name := range []string{"processing", "processing-2", "processing-3"} {
		addr, err := stack.InstanceAddr(name)
		if err != nil {
			t.Fatal(err)
		}
		m := scrape(t, "http://"+addr+"/metrics")
		if n := m.sumWith("processing_hits_total", `outcome="applied"`); n == 0 {
			t.Errorf("%s applied no hit: processing did not scale out", name)
		} else {
			t.Logf("scale: %s applied %.0f hits so far", name, n)
		}
		warm, cold := m.sumWith("processing_partition_claims_total", `start="warm"`), m.sumWith("processing_partition_claims_total", `start="cold"`)
		t.Logf("scale: %s claimed %.0f partitions warm, %.0f cold, read %.0f visitors", name, warm, cold, m.sum("processing_visitor_reads_total"))
		if i == 0 && warm+cold != float64(partitions) {
			t.Errorf("%s claimed %.0f partitions, want the hits topic's %d, each once: the joins revoked partitions that stayed with it", name, warm+cold, partitions)
		}
	}
	if !at(0.6, "a processing instance stops") {
		return
	}
	must(t, stack.Terminate("processing"))
	waitGroupMembers(t, cfg, 2)
	if !at(0.75, "a processing instance is killed") {
		return
	}
	// Its partitions wait for the group's session timeout, then go to the
	// one left, which replays them from their last commits.
	must(t, stack.Kill("processing-3"))
	if ctx.Err() != nil {
		t.Errorf("the traffic ended before processing-3 was killed; raise E2E_DURATION")
	}
}

// setShards sets a property's processing shards with configctl, as
// docs/operations.md tells an operator to. It is called before the
// property's first hit: collection and processing look a property up when
// its first hit comes, so every hit is keyed by the new count.
func setShards(t *testing.T, stack *localstack.Stack, cfg localstack.Config, property string, n int) {
	t.Helper()
	out, err := exec.Command(filepath.Join(cfg.BinDir, "configctl"), "-config-svc-url=http://"+stack.Addr("config"),
		"-identity-secret="+localstack.DevIdentitySecret, "set-shards", property, strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("configctl set-shards: %v: %s", err, out)
	}
	// Three processors each need partitions of their own.
	if n := topicPartitions(t, cfg); n < 3 {
		t.Fatalf("the hits topic has %d partitions; three processors need at least 3", n)
	}
}

// topicPartitions returns the number of partitions of the hits topic.
func topicPartitions(t *testing.T, cfg localstack.Config) int {
	t.Helper()
	client := kafkaClient(t, cfg)
	defer client.Close()
	parts, err := client.Partitions(hit.TopicHits)
	if err != nil {
		t.Fatal(err)
	}
	return len(parts)
}

// groupAssignment describes processing's consumer group: the partitions of
// the hits topic each member holds, by member ID.
func groupAssignment(t *testing.T, cfg localstack.Config) map[string][]int32 {
	t.Helper()
	client := kafkaClient(t, cfg)
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := admin.DescribeConsumerGroups([]string{"processing"})
	if err != nil || len(groups) != 1 {
		t.Fatalf("describe the processing group: %v (%d groups)", err, len(groups))
	}
	out := map[string][]int32{}
	for id, member := range groups[0].Members {
		a, err := member.GetMemberAssignment()
		if err != nil {
			t.Fatalf("member %s's assignment: %v", id, err)
		}
		if a != nil {
			out[id] = a.Topics[hit.TopicHits]
		}
	}
	return out
}

// waitGroupMembers waits until processing's group has rebalanced to n
// members, each holding partitions of the hits topic.
func waitGroupMembers(t *testing.T, cfg localstack.Config, n int) {
	t.Helper()
	var got map[string][]int32
	eventually.NoError(t, 30*time.Second, fmt.Sprintf("processing's group balanced over %d members", n), func() error {
		got = groupAssignment(t, cfg)
		owned := 0
		for _, parts := range got {
			if len(parts) > 0 {
				owned++
			}
		}
		if len(got) != n || owned != n {
			return fmt.Errorf("%d members, %d of them holding partitions: %v", len(got), owned, got)
		}
		return nil
	})
	var shares []string
	for _, parts := range got {
		shares = append(shares, fmt.Sprint(parts))
	}
	sort.Strings(shares)
	t.Logf("scale: processing's group has %d members, holding partitions %s", n, strings.Join(shares, " "))
}

// reportReads reads an acquisition and a behavior report through the
// gateway, one after the other, until its context ends: each must be
// answered 200 (a client has nothing to wait out while instances come
// and go).
type reportReads struct {
	t    *testing.T
	done chan struct{}
	mu   sync.Mutex
	// ok counts the answers, before and after mark; failed the others.
	ok, okAfterMark, failed int
	marked                  bool
}

func readReportsThroughout(ctx context.Context, t *testing.T, m *simulate.Merchant) *reportReads {
	r := &reportReads{t: t, done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	q := url.Values{"property_id": {m.PropertyID}, "range": {"today"}}
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			for _, path := range []string{"/v1/reports/acquisition/channel", "/v1/reports/behavior/pages"} {
				err := readReport(ctx, client, m, path, q)
				if ctx.Err() != nil {
					return
				}
				r.mu.Lock()
				switch {
				case err != nil:
					r.failed++
					if r.failed <= 10 {
						t.Errorf("a report read while instances came and went: %v", err)
					}
				case r.marked:
					r.okAfterMark++
				default:
					r.ok++
				}
				r.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return r
}

func readReport(ctx context.Context, client *http.Client, m *simulate.Merchant, path string, q url.Values) error {
	req, err := http.NewRequestWithContext(ctx, "GET", m.Gateway+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+m.AccessToken)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	var a reportAnswer
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if a.Stale {
		return fmt.Errorf("GET %s: a stale answer (the store failed)", path)
	}
	return nil
}

// mark notes that the first report instances are gone: reads after it
// were answered by the added ones alone.
func (r *reportReads) mark() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.marked = true
}

// wait waits for the reads to end and checks that there were answers
// before and after the first instances went.
func (r *reportReads) wait() {
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t.Logf("scale: reports read through the gateway: %d answered before the first instances stopped, %d after, %d failed", r.ok, r.okAfterMark, r.failed)
	if r.ok == 0 || r.okAfterMark == 0 {
		r.t.Errorf("reports answered: %d before the first instances stopped and %d after; want some of each", r.ok, r.okAfterMark)
	}
}
