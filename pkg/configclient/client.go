package configclient

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // properties' time zones load whatever the host has installed (wire.go)

	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

var (
	// ErrNotFound is returned for a tracking ID or property that does not
	// exist (or was deleted).
	ErrNotFound = errors.New("property not found")
	// ErrUnavailable is returned (wrapped) when config-svc cannot be
	// reached and nothing is cached for the key.
	ErrUnavailable = errors.New("config-svc unavailable")
)

// Config configures a Client.
type Config struct {
	// BaseURL is config-svc's base URL, e.g. http://127.0.0.1:8082. Empty:
	// healthy instances of Service are found in Consul.
	BaseURL string
	// Consul finds config-svc when BaseURL is empty.
	Consul *api.Client
	// Service is config-svc's Consul service name ("config").
	Service string
	// Caller is the calling service's name; requests are signed as
	// tenant.System(Caller).
	Caller string
	// IdentitySecret is the shared secret that signs identity headers.
	IdentitySecret []byte
	// Wait is how long one long poll of the change feed waits (30s).
	Wait time.Duration
	// RequestTimeout bounds one lookup (5s).
	RequestTimeout time.Duration
	// HistoryTimeout bounds the fetch of a property's rule history (30s):
	// one answer of every version kept, up to 10,000, tens of megabytes
	// for a property whose large document an hourly job rewrites. Failing
	// at RequestTimeout, it failed at every try and held up the
	// partitions of every processor without a cached copy.
	HistoryTimeout time.Duration
	// NegativeTTL is how long an unknown tracking ID or property is
	// answered from the cache (1m); the change feed ends it at once when
	// the ID is created.
	NegativeTTL time.Duration
	// ResyncInterval is how often every cached document is refetched
	// anyway, a safety net under the change feed (10m). The refetches are
	// spread over the interval, after those the feed asks for.
	ResyncInterval time.Duration
	// ResyncRate caps the resync's refetches per second (50), so that a
	// large cache does not load config-svc: a pass over more than
	// ResyncInterval × ResyncRate documents takes longer than the interval.
	ResyncRate float64
	// IdleTTL: a document no lookup has asked for in this long is dropped
	// (24h), so the cache holds the properties in use, not every property
	// ever seen. While config-svc is down, a dropped property cannot be
	// looked up (ErrUnavailable).
	IdleTTL time.Duration
	// MaxNegative bounds the unknown tracking IDs and property IDs
	// remembered (100,000 each); past it, an unknown ID is asked for again
	// at every lookup.
	MaxNegative int
	// HTTPClient sends the requests (a default client when nil).
	HTTPClient *http.Client
	Log        *slog.Logger
	// Registerer receives the client's metrics (none when nil).
	Registerer prometheus.Registerer
}

// RegisterFlags registers the flags a service needs to reach config-svc:
// -config-svc-url and -config-svc-name. The caller sets Caller,
// IdentitySecret, Consul, Log and Registerer from its own configuration.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.BaseURL, "config-svc-url", "", "base URL of config-svc, e.g. http://127.0.0.1:8082 (empty: find healthy instances in Consul)")
	fs.StringVar(&c.Service, "config-svc-name", "config", "Consul service name of config-svc")
	fs.DurationVar(&c.IdleTTL, "config-cache-idle-ttl", 24*time.Hour, "drop a cached property document no lookup has asked for in this long")
	fs.Float64Var(&c.ResyncRate, "config-resync-rate", 50, "at most this many cached property documents refetched per second by the periodic resync")
}

// Locate makes the client find config-svc's instances through the Consul
// agent d names, unless -config-svc-url gave config-svc's address.
func (c *Config) Locate(d *discovery.Config) error {
	if c.BaseURL != "" {
		return nil
	}
	consul, err := d.Client()
	if err != nil {
		return err
	}
	c.Consul = consul
	return nil
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-config-svc-url %q is not an http(s) URL", c.BaseURL)
		}
	} else if c.Consul == nil {
		return errors.New("config-svc: give -config-svc-url or a Consul agent (-consul-addr) to find it")
	}
	if c.Caller == "" {
		return errors.New("config-svc client: Caller (the calling service's name) is empty")
	}
	if len(c.IdentitySecret) < 16 {
		return errors.New("config-svc client: the identity secret must be at least 16 bytes")
	}
	return nil
}

// Client looks up property documents by tracking ID and by property ID,
// caches them, and follows config-svc's change feed (Run) to refresh what
// changed within seconds. When config-svc is unreachable it keeps serving
// the last known copies, and says so in its log and in the
// configclient_feed_connected metric.
//
// Lookups are safe for concurrent use; Run must be running for cached
// documents to follow changes.
type Client struct {
	cfg  Config
	http *http.Client
	log  *slog.Logger
	m    *clientMetrics

	instances atomic.Pointer[[]string] // base URLs from Consul
	next      atomic.Uint64            // round-robin position

	flight singleflight.Group

	mu        sync.Mutex
	byID      map[string]*entry
	byTID     map[string]string    // tracking ID -> property ID
	negTID    map[string]time.Time // unknown tracking IDs, until
	negID     map[string]time.Time // unknown property IDs, until
	versions  map[string]*cachedHistory
	gen       uint64            // count of changes (and anchorings) applied
	changedAt map[string]uint64 // property ID, and tracking ID, -> gen of its last change, while a fetch that began before it may be in flight
	fetching  map[uint64]int    // gen at which each fetch in flight began -> how many
	anchorGen uint64            // gen of the last anchoring
	seq       int64             // feed position; -1 before anchoring
	refresh   chan struct{}     // wakes the refresher
	pending   map[string]bool   // property IDs waiting for a refetch (changed)
	resyncNow bool              // the next resync pass starts at once (anchoring)
	epoch     uint64            // advanced every IdleTTL/idleEpochs by the sweeper

	connected atomic.Bool

	// salts are the cookieless salts fetched, by date (YYYY-MM-DD): read
	// on every cookieless hit, so replaced whole, under saltMu, when a date
	// is added or dropped.
	salts  atomic.Pointer[map[string][]byte]
	saltMu sync.Mutex
}

type entry struct {
	doc   *Property
	stale bool   // a refetch is due or failed; still served
	used  uint64 // epoch of the last lookup
	gen   uint64 // gen at which the fetch of doc began
}

// cachedHistory is a property's cached rule history.
type cachedHistory struct {
	history *History
	used    uint64 // epoch of the last lookup
	// stale: the property's rules changed (or the feed was re-anchored)
	// since the fetch; the next lookup fetches the history again, and
	// while config-svc cannot answer it is served as the last known copy,
	// a new attempt made no sooner than retry.at (the wait doubling per
	// failure up to maxBackoff). Turning stale resets retry.at only: a new
	// change is fetched at once, and the backoff goes on from its last
	// wait if that fetch fails too.
	stale bool
	retry retry
}

// The backoff of the feed's long polls and of refetches while config-svc
// fails.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// idleEpochs is how many sweeps an idle document survives: it is dropped
// between IdleTTL and IdleTTL × (1 + 1/idleEpochs) after its last lookup.
const idleEpochs = 4

// New returns a Client. It does no I/O: lookups fetch lazily, Run follows
// the change feed.
func New(cfg Config) (*Client, error) {
	if cfg.Service == "" {
		cfg.Service = "config"
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 30 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.HistoryTimeout <= 0 {
		cfg.HistoryTimeout = 30 * time.Second
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = time.Minute
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 10 * time.Minute
	}
	if cfg.ResyncRate <= 0 {
		cfg.ResyncRate = 50
	}
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = 24 * time.Hour
	}
	if cfg.MaxNegative <= 0 {
		cfg.MaxNegative = 100_000
	}
	c := &Client{
		cfg:       cfg,
		http:      cfg.HTTPClient,
		log:       cfg.Log,
		m:         newClientMetrics(cfg.Registerer),
		byID:      map[string]*entry{},
		byTID:     map[string]string{},
		negTID:    map[string]time.Time{},
		negID:     map[string]time.Time{},
		versions:  map[string]*cachedHistory{},
		changedAt: map[string]uint64{},
		fetching:  map[uint64]int{},
		seq:       -1,
		refresh:   make(chan struct{}, 1),
		pending:   map[string]bool{},
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With(slog.String("component", "configclient"))
	return c, nil
}

// ByTrackingID returns the document of the property holding tid (shared:
// callers must not modify it). It answers from the cache when it can; ErrNotFound when no property has tid;
// an error wrapping ErrUnavailable when config-svc cannot be reached and
// nothing is cached.
func (c *Client) ByTrackingID(ctx context.Context, tid string) (*Property, error) {
	if !ValidTrackingID(tid) {
		return nil, ErrNotFound
	}
	c.mu.Lock()
	if pid, ok := c.byTID[tid]; ok {
		if e := c.byID[pid]; e != nil {
			e.used = c.epoch
			doc, stale := e.doc, e.stale
			c.mu.Unlock()
			c.served(stale)
			return doc, nil
		}
	}
	if until, ok := c.negTID[tid]; ok && time.Now().Before(until) {
		c.mu.Unlock()
		return nil, ErrNotFound
	}
	c.mu.Unlock()
	return c.load(ctx, "tid:"+tid, "/internal/v1/properties/by-tracking-id/"+url.PathEscape(tid), func(now time.Time, gen uint64) {
		c.rememberUnknownLocked(c.negTID, tid, now, gen)
	})
}

// ByID returns the document of a property by its ID, like ByTrackingID.
func (c *Client) ByID(ctx context.Context, propertyID string) (*Property, error) {
	c.mu.Lock()
	if e := c.byID[propertyID]; e != nil {
		e.used = c.epoch
		doc, stale := e.doc, e.stale
		c.mu.Unlock()
		c.served(stale)
		return doc, nil
	}
	if until, ok := c.negID[propertyID]; ok && time.Now().Before(until) {
		c.mu.Unlock()
		return nil, ErrNotFound
	}
	c.mu.Unlock()
	return c.load(ctx, "id:"+propertyID, "/internal/v1/properties/"+url.PathEscape(propertyID), func(now time.Time, gen uint64) {
		c.rememberUnknownLocked(c.negID, propertyID, now, gen)
	})
}

// served counts a lookup answered from the cache as stale when its copy
// is due for a refetch, or when the feed is not followed (config-svc
// unreachable): a change made meanwhile cannot be seen, so every copy may
// be stale.
func (c *Client) served(stale bool) {
	if stale || !c.connected.Load() {
		c.m.staleServed.Inc()
	}
}

// rememberUnknownLocked records key as unknown in neg until NegativeTTL
// from now, unless neg is full (the sweeper empties it of expired keys
// every NegativeTTL), or the answer, of a fetch begun at gen, may predate
// what the client knows: the feed announced a change to key since (its
// creation), or the client re-anchored (a creation in the gap). Such an
// answer is returned, not remembered: the next lookup asks again. c.mu is
// held.
func (c *Client) rememberUnknownLocked(neg map[string]time.Time, key string, now time.Time, gen uint64) {
	if c.changedAt[key] > gen || c.anchorGen > gen {
		return
	}
	if _, ok := neg[key]; ok || len(neg) < c.cfg.MaxNegative {
		neg[key] = now.Add(c.cfg.NegativeTTL)
	}
}

// beginFetch notes a fetch starting now and returns the gen it began at,
// for store and endFetch.
func (c *Client) beginFetch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++ // every fetch its own gen: overlapping fetches are told apart
	c.fetching[c.gen]++
	return c.gen
}

// endFetch notes the end of a fetch begun at gen. changedAt only serves
// fetches in flight (a change after a fetch began makes its answer
// suspect), so a change is forgotten once no fetch in flight began before
// it: emptied whenever none is in flight, pruned whenever the oldest ends
// (on a busy instance fetches overlap without end, and it kept every
// property changed since the start).
func (c *Client) endFetch(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fetching[gen]--; c.fetching[gen] <= 0 {
		delete(c.fetching, gen)
	}
	if len(c.fetching) == 0 {
		clear(c.changedAt)
		return
	}
	oldest := uint64(1<<64 - 1)
	for g := range c.fetching {
		oldest = min(oldest, g)
	}
	if oldest > gen { // the oldest ended: the changes before the next are no one's
		for k, g := range c.changedAt {
			if g <= oldest {
				delete(c.changedAt, k)
			}
		}
	}
}

// load fetches a document once for all concurrent callers of key.
func (c *Client) load(ctx context.Context, key, path string, negative func(now time.Time, gen uint64)) (*Property, error) {
	v, err, _ := c.flight.Do(key, func() (any, error) {
		gen := c.beginFetch()
		defer c.endFetch(gen)
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.RequestTimeout)
		defer cancel()
		doc, err := c.fetchDoc(fctx, path)
		if errors.Is(err, ErrNotFound) {
			c.mu.Lock()
			negative(time.Now(), gen)
			c.mu.Unlock()
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		c.store(doc, gen)
		return doc, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Property), nil
}

// store caches doc, fetched when the client had applied gen changes. If a
// change to the property arrived meanwhile, doc may predate it: it is
// cached, and refetched at once.
func (c *Client) store(doc *Property, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	used := c.epoch
	overtaken := false
	if old := c.byID[doc.PropertyID]; old != nil {
		used = old.used           // a refetch is not a lookup
		overtaken = old.gen > gen // a fetch begun after this one stored first
	}
	c.byID[doc.PropertyID] = &entry{doc: doc, used: used, gen: gen}
	if h := c.versions[doc.PropertyID]; h != nil && h.history.Newest() != doc.Rules.Version {
		// A version the feed did not announce (the resync found it): the
		// history is fetched again at its next use.
		h.stale, h.retry.at = true, time.Time{}
	}
	c.byTID[doc.TrackingID] = doc.PropertyID
	delete(c.negTID, doc.TrackingID)
	delete(c.negID, doc.PropertyID)
	if overtaken || c.changedAt[doc.PropertyID] > gen || c.anchorGen > gen && c.seq >= 0 {
		// A change, or the anchoring of the feed, raced the fetch. (Before
		// the first anchoring nothing is marked: anchoring marks every
		// document cached by then.)
		c.markLocked(doc.PropertyID)
	}
	c.m.entries.Set(float64(len(c.byID)))
}

// RuleHistory returns a property's rule versions, compiled, for giving
// hits the rules of their time (live processing and reprocessing). It is
// cached with the property's document, until the property goes idle, and
// fetched again after the property's rules change. While config-svc
// cannot answer, the last known history is served (as the document is):
// a processor keeps processing with the rules it has rather than holding
// up its partition, and its hits of a version it has not learned get the
// newest rules it knows (reprocessing gives them theirs).
func (c *Client) RuleHistory(ctx context.Context, propertyID string) (*History, error) {
	c.mu.Lock()
	last := c.versions[propertyID]
	if last != nil {
		last.used = c.epoch
		if !last.stale || time.Now().Before(last.retry.at) {
			c.mu.Unlock()
			return last.history, nil
		}
	}
	c.mu.Unlock()
	h, err := c.fetchHistory(ctx, propertyID)
	if err == nil || last == nil || errors.Is(err, ErrNotFound) {
		return h, err
	}
	c.mu.Lock()
	last.retry = last.retry.next(time.Now(), maxBackoff)
	wait := last.retry.backoff
	c.mu.Unlock()
	// Debug: while config-svc is down this is every property in use, and
	// the feed's warning and configclient_fetches_total say it already.
	c.log.Debug("serving the last known rule history; config-svc did not answer its refetch",
		slog.String("property_id", propertyID), slog.Any("error", err), slog.Duration("next_try_in", wait))
	return last.history, nil
}

// fetchHistory fetches a property's rule history once for all concurrent
// callers, as fetchHistoryNow.
func (c *Client) fetchHistory(ctx context.Context, propertyID string) (*History, error) {
	v, err, _ := c.flight.Do("versions:"+propertyID, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.HistoryTimeout)
		defer cancel()
		return c.fetchHistoryNow(fctx, propertyID)
	})
	if err != nil {
		return nil, err
	}
	return v.(*History), nil
}

// fetchHistoryNow fetches a property's rule history and caches it, unless
// it may be older than what the client knows.
func (c *Client) fetchHistoryNow(ctx context.Context, propertyID string) (*History, error) {
	gen := c.beginFetch()
	defer c.endFetch(gen)
	var out RuleVersions
	if err := c.get(ctx, "/internal/v1/properties/"+url.PathEscape(propertyID)+"/rules/versions", &out); err != nil {
		return nil, err
	}
	h, err := NewHistory(out.Versions)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", propertyID, err)
	}
	c.mu.Lock()
	// Not cached when it may be older than what the client knows: a
	// change or an anchoring since the fetch began, or a document (the
	// resync's) at a newer version than the history's last.
	e := c.byID[propertyID]
	if c.changedAt[propertyID] <= gen && c.anchorGen <= gen && (e == nil || e.doc.Rules.Version <= h.Newest()) {
		c.versions[propertyID] = &cachedHistory{history: h, used: c.epoch}
	}
	c.mu.Unlock()
	return h, nil
}

// PropertyIDs returns a page of the IDs of every property (PropertyList),
// from the first page (after "") on, up to limit (1 to 1000) rows of
// config-svc's table read: a page may hold fewer, and only a NextAfter of
// "" means the end. It is not cached.
func (c *Client) PropertyIDs(ctx context.Context, after string, limit int) (*PropertyList, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if after != "" {
		q.Set("after", after)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	var out PropertyList
	if err := c.get(ctx, "/internal/v1/properties?"+q.Encode(), &out); err != nil {
		return nil, fmt.Errorf("list the properties: %w", err)
	}
	return &out, nil
}

// Fresh fetches a property's document and rule history from config-svc
// whatever is cached (and caches them as a lookup would), for a caller
// that must see every change made before the call, announced by the
// change feed or not yet (it lags, or the process has just started and
// does not follow it yet): a reprocessing job applying the rules in effect
// when it was created. Unlike the lookups, it fails while config-svc
// cannot answer rather than serve the last known copy; ErrNotFound when
// the property does not exist. Neither fetch is shared with a lookup's
// fetch in flight, which may have begun before the change.
func (c *Client) Fresh(ctx context.Context, propertyID string) (*Property, *History, error) {
	gen := c.beginFetch()
	defer c.endFetch(gen)
	dctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	doc, err := c.fetchDoc(dctx, "/internal/v1/properties/"+url.PathEscape(propertyID))
	cancel()
	if err != nil {
		return nil, nil, err
	}
	c.store(doc, gen)
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HistoryTimeout)
	defer cancel()
	h, err := c.fetchHistoryNow(hctx, propertyID)
	if err != nil {
		return nil, nil, err
	}
	return doc, h, nil
}

// Connected reports whether the change feed is being followed: false
// while config-svc is unreachable, when cached documents may be stale.
func (c *Client) Connected() bool { return c.connected.Load() }

// Seq returns the change-feed position the client has applied (-1 before
// Run has anchored it).
func (c *Client) Seq() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// Run follows the change feed (and, without a static URL, config-svc's
// instances in Consul) until ctx is done, refreshing cached documents that
// change. It returns nil when ctx is done.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if c.cfg.BaseURL == "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = discovery.Watch(ctx, c.cfg.Consul, c.cfg.Service, c.log, c.setInstances)
		}()
	}
	wg.Add(2)
	go func() { defer wg.Done(); c.refresher(ctx) }()
	go func() { defer wg.Done(); c.sweeper(ctx) }()
	c.follow(ctx)
	wg.Wait()
	return nil
}

// setInstances takes the instances to ask, which are those listed failing
// too while none passes its checks (discovery.Watch's panic routing): the
// gauge counts the healthy ones.
func (c *Client) setInstances(insts []discovery.Instance) {
	urls := instanceURLs(insts)
	c.instances.Store(&urls)
	c.m.instances.Set(float64(discovery.Passing(insts)))
}

// instanceURLs returns the base URL of each instance.
func instanceURLs(insts []discovery.Instance) []string {
	urls := make([]string, len(insts))
	for i, in := range insts {
		urls[i] = "http://" + in.Addr
	}
	return urls
}

// follow long-polls the change feed, with backoff while it fails.
func (c *Client) follow(ctx context.Context) {
	backoff := minBackoff
	gone := false // the feed answered 410, and no page since
	// The gauge is set before the flag, so that whoever sees Connected()
	// change sees the metric agree.
	fail := func(err error) {
		c.m.connected.Set(0)
		if c.connected.Swap(false) || backoff == minBackoff {
			c.log.Warn("cannot follow config-svc's change feed; serving the last known documents", slog.Any("error", err))
		}
		c.m.feedErrors.Inc()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	for ctx.Err() == nil {
		c.mu.Lock()
		since := c.seq
		c.mu.Unlock()
		if since < 0 {
			var head Changes
			hctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			err := c.get(hctx, "/internal/v1/changes", &head)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				continue
			}
			c.anchor(head.Seq)
			continue
		}
		// Until config-svc has answered a poll (at the start, after a
		// failure) the poll does not wait: its answer, at once, is what
		// sets configclient_feed_connected to 1, which a long poll with
		// nothing to announce would hold back for its whole Wait.
		wait := c.cfg.Wait
		if !c.connected.Load() {
			wait = 0
		}
		pctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
		var page Changes
		err := c.get(pctx, fmt.Sprintf("/internal/v1/changes?since=%d&wait=%s", since, wait), &page)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errGone) {
			c.log.Warn("config-svc's change feed no longer holds our position; refetching every cached document", slog.Int64("since", since))
			c.mu.Lock()
			c.seq = -1
			c.mu.Unlock()
			if gone {
				// Gone again at the head just given, with no page in
				// between: config-svc's feed is inconsistent (instances
				// not sharing one), and re-anchoring at once would spin.
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, maxBackoff)
			}
			gone = true
			continue
		}
		if err != nil {
			fail(err)
			continue
		}
		c.m.connected.Set(1)
		if !c.connected.Swap(true) {
			c.log.Info("following config-svc's change feed", slog.Int64("seq", page.Seq))
		}
		backoff, gone = minBackoff, false
		c.apply(page)
	}
}

// anchor sets the feed position after which changes are followed. Every
// cached document may predate it: each is marked stale, and the resync
// starts a pass over them at once (at its rate, so that a large cache does
// not fall on config-svc at once; changes from the feed go first).
func (c *Client) anchor(seq int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq = seq
	c.gen++
	c.anchorGen = c.gen
	c.m.seq.Set(float64(seq))
	for _, h := range c.versions {
		h.stale, h.retry.at = true, time.Time{}
	}
	c.negTID = map[string]time.Time{}
	c.negID = map[string]time.Time{}
	for _, e := range c.byID {
		e.stale = true
	}
	c.resyncNow = len(c.byID) > 0
	c.wakeLocked()
}

// apply records a page of changes: every cached document they touch is
// marked for a refetch, and negative entries they contradict are dropped.
func (c *Client) apply(page Changes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range page.Changes {
		c.gen++
		if len(c.fetching) > 0 {
			// By property ID and by tracking ID (a UUID and an AT-…
			// never collide): a fetch by either may predate the change.
			c.changedAt[ch.PropertyID] = c.gen
			if ch.TrackingID != "" {
				c.changedAt[ch.TrackingID] = c.gen
			}
		}
		delete(c.negTID, ch.TrackingID)
		delete(c.negID, ch.PropertyID)
		if h := c.versions[ch.PropertyID]; h != nil {
			h.stale, h.retry.at = true, time.Time{}
		}
		if _, cached := c.byID[ch.PropertyID]; cached {
			c.markLocked(ch.PropertyID)
		}
		c.m.changes.WithLabelValues(ch.Kind).Inc()
	}
	if page.Seq > c.seq {
		c.seq = page.Seq
		c.m.seq.Set(float64(page.Seq))
	}
}

// markLocked queues a refetch of a cached property that changed; c.mu is
// held.
func (c *Client) markLocked(pid string) {
	if e := c.byID[pid]; e != nil {
		e.stale = true
	}
	c.pending[pid] = true
	c.wakeLocked()
}

// wakeLocked wakes the refresher; c.mu is held.
func (c *Client) wakeLocked() {
	select {
	case c.refresh <- struct{}{}:
	default:
	}
}

// refresher refetches documents: first, as soon as it can, those the feed
// says changed (pending); then those whose refetch failed, each when
// its own backoff has passed (so one property config-svc cannot serve holds
// up neither the others nor the resync); then the resync's pass over every
// cached document, paced so the pass takes ResyncInterval (or one document
// per 1/ResyncRate, when that is longer). A failed refetch keeps the old
// copy, and is tried again on its own backoff.
func (c *Client) refresher(ctx context.Context) {
	q := &refetchQueue{pass: resyncPass{start: time.Now()}, retries: map[string]retry{}}
	for {
		pid, changed, wait := c.nextRefetch(q, time.Now())
		if pid == "" {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-c.refresh:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		gen := c.beginFetch()
		fctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		doc, err := c.fetchDoc(fctx, "/internal/v1/properties/"+url.PathEscape(pid))
		cancel()
		switch {
		case err == nil:
			c.store(doc, gen)
		case errors.Is(err, ErrNotFound):
			c.forget(pid)
		}
		c.endFetch(gen)
		if err == nil || errors.Is(err, ErrNotFound) {
			delete(q.retries, pid)
			if !changed {
				q.pass.backoff = 0
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("refetching a property failed; serving the last known copy", slog.String("property_id", pid), slog.Bool("changed", changed), slog.Any("error", err))
		// Tried again on its own backoff, so that it holds up neither the
		// others nor the pass; the pass itself slows while its refetches
		// keep failing (config-svc down), without keeping the feed's
		// changes waiting.
		q.retryLater(pid, time.Now())
		if !changed {
			q.pass.failed(time.Now())
		}
	}
}

// refetchQueue is the refresher's own work besides the feed's pending
// changes: changed properties to try again, and the resync's pass.
type refetchQueue struct {
	retries map[string]retry
	pass    resyncPass
}

// retry is when something whose fetch failed is tried again: a changed
// property's refetch (refetchQueue), a stale rule history's
// (cachedHistory).
type retry struct {
	at      time.Time
	backoff time.Duration // the wait before at; zero before the first failure
}

// next is the retry after one more failure at now: the wait doubles from
// minBackoff (the first failure's) up to limit.
func (r retry) next(now time.Time, limit time.Duration) retry {
	b := min(max(2*r.backoff, minBackoff), limit)
	return retry{at: now.Add(b), backoff: b}
}

// maxRetryBackoff bounds the wait between two refetches of one changed
// property that keep failing.
const maxRetryBackoff = time.Minute

// retryLater schedules another try of pid, backing off from the last (a
// pid not retrying yet has the zero retry: the first wait is minBackoff).
func (q *refetchQueue) retryLater(pid string, now time.Time) {
	q.retries[pid] = q.retries[pid].next(now, maxRetryBackoff)
}

// resyncPass is the resync's walk over the cache: the property IDs still
// to refetch, one every gap.
type resyncPass struct {
	todo    []string
	start   time.Time // when the pass (or the last one) began
	gap     time.Duration
	nextAt  time.Time     // when the next refetch of the pass is due
	backoff time.Duration // added to gap while the pass's refetches fail
}

// failed slows the pass after one of its refetches failed at now: its
// next refetch waits the gap plus a backoff that doubles from minBackoff
// to maxBackoff while they keep failing (a success resets it).
func (p *resyncPass) failed(now time.Time) {
	r := retry{backoff: p.backoff}.next(now.Add(p.gap), maxBackoff)
	p.nextAt, p.backoff = r.at, r.backoff
}

// nextRefetch picks the property to refetch now: a changed one (changed
// true), pending or due for a retry; else the pass's next one when it is
// due, starting a new pass when the last has ended and ResyncInterval has
// passed since it began, or at once after an anchoring (at ResyncRate).
// With nothing to do now it returns "" and how long to wait.
func (c *Client) nextRefetch(q *refetchQueue, now time.Time) (pid string, changed bool, wait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.pending {
		delete(c.pending, p)
		return p, true, 0
	}
	wait = time.Duration(1<<63 - 1)
	for p, r := range q.retries {
		switch {
		case c.byID[p] == nil: // dropped meanwhile
			delete(q.retries, p)
		case !now.Before(r.at):
			return p, true, 0
		default:
			wait = min(wait, r.at.Sub(now))
		}
	}
	pass := &q.pass
	fastest := time.Duration(float64(time.Second) / c.cfg.ResyncRate)
	if c.resyncNow || len(pass.todo) == 0 && now.Sub(pass.start) >= c.cfg.ResyncInterval {
		pass.todo = make([]string, 0, len(c.byID))
		for p := range c.byID {
			pass.todo = append(pass.todo, p)
		}
		pass.start, pass.nextAt = now, now
		pass.gap = max(c.cfg.ResyncInterval/time.Duration(max(len(pass.todo), 1)), fastest)
		if c.resyncNow {
			pass.gap = fastest
		}
		c.resyncNow = false
	}
	for len(pass.todo) > 0 && !now.Before(pass.nextAt) {
		pid, pass.todo = pass.todo[0], pass.todo[1:]
		if _, retrying := q.retries[pid]; c.byID[pid] != nil && !retrying { // else dropped since the pass began, or tried on its own
			pass.nextAt = now.Add(pass.gap)
			return pid, false, 0
		}
	}
	if len(pass.todo) > 0 {
		return "", false, min(wait, pass.nextAt.Sub(now))
	}
	return "", false, min(wait, max(c.cfg.ResyncInterval-now.Sub(pass.start), time.Millisecond))
}

// forget drops a deleted property.
func (c *Client) forget(pid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byID[pid]; e != nil {
		delete(c.byTID, e.doc.TrackingID)
		c.negTID[e.doc.TrackingID] = time.Now().Add(c.cfg.NegativeTTL)
	}
	delete(c.byID, pid)
	delete(c.versions, pid)
	c.negID[pid] = time.Now().Add(c.cfg.NegativeTTL)
	c.m.entries.Set(float64(len(c.byID)))
}

// sweeper drops what lookups no longer ask for: every IdleTTL/idleEpochs,
// documents and rule histories idle for IdleTTL; every NegativeTTL,
// unknown IDs whose time is up.
func (c *Client) sweeper(ctx context.Context) {
	idle := time.NewTicker(c.cfg.IdleTTL / idleEpochs)
	defer idle.Stop()
	unknown := time.NewTicker(c.cfg.NegativeTTL)
	defer unknown.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			c.dropIdle()
		case now := <-unknown.C:
			c.dropExpiredUnknown(now)
			c.dropOldSalts(now)
		}
	}
}

// dropIdle advances the epoch and drops what has been idle for idleEpochs
// of them.
func (c *Client) dropIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	idle := func(used uint64) bool { return c.epoch-used > idleEpochs }
	for pid, e := range c.byID {
		if idle(e.used) {
			delete(c.byTID, e.doc.TrackingID)
			delete(c.byID, pid)
			delete(c.pending, pid)
			c.m.dropped.Inc()
		}
	}
	for pid, h := range c.versions {
		if idle(h.used) {
			delete(c.versions, pid)
		}
	}
	c.m.entries.Set(float64(len(c.byID)))
}

// dropExpiredUnknown forgets the unknown IDs whose time is up.
func (c *Client) dropExpiredUnknown(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, neg := range []map[string]time.Time{c.negTID, c.negID} {
		for k, until := range neg {
			if !now.Before(until) {
				delete(neg, k)
			}
		}
	}
}

// fetchDoc gets and prepares a property document.
func (c *Client) fetchDoc(ctx context.Context, path string) (*Property, error) {
	var doc Property
	if err := c.get(ctx, path, &doc); err != nil {
		c.m.fetches.WithLabelValues(fetchResult(err)).Inc()
		return nil, err
	}
	if err := doc.Prepare(); err != nil {
		c.m.fetches.WithLabelValues("invalid").Inc()
		return nil, fmt.Errorf("%w: the rules of %s do not compile here (is this service older than config-svc?): %w", ErrUnavailable, doc.PropertyID, err)
	}
	c.m.fetches.WithLabelValues("ok").Inc()
	return &doc, nil
}

func fetchResult(err error) string {
	if errors.Is(err, ErrNotFound) {
		return "not_found"
	}
	return "error"
}

var errGone = errors.New("feed position gone")

// get sends a signed GET to a config-svc instance and decodes the JSON
// answer into out. 404 is ErrNotFound when it is config-svc's not_found
// (another 404 wraps ErrUnavailable), 410 errGone; other failures wrap
// ErrUnavailable. With instances from Consul, a request that cannot reach
// one instance is sent once more to the next.
func (c *Client) get(ctx context.Context, path string, out any) error {
	attempts := 1
	if c.cfg.BaseURL == "" {
		attempts = 2
	}
	var err error
	for range attempts {
		var retry bool
		retry, err = c.getOnce(ctx, path, out)
		if !retry || ctx.Err() != nil {
			break
		}
	}
	return err
}

// getOnce is one attempt of get; retry says another instance may do
// better (this one could not be reached).
func (c *Client) getOnce(ctx context.Context, path string, out any) (retry bool, err error) {
	base, err := c.baseURL(ctx)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	tenant.Sign(req.Header, tenant.System(c.cfg.Caller), c.cfg.IdentitySecret, time.Now())
	resp, err := c.http.Do(req)
	if err != nil {
		return true, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return false, fmt.Errorf("%w: decode %s: %w", ErrUnavailable, path, err)
		}
		return false, nil
	case http.StatusNotFound:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if !configSvcNotFound(b) {
			// Not config-svc's answer about something it does not have
			// (the gateway's no_route, a load balancer's or a mux's
			// page): the URL is not config-svc's routes, which says
			// nothing about the property.
			return false, fmt.Errorf("%w: GET %s: %s, not config-svc's answer (does -config-svc-url, or the Consul service %q, lead to config-svc?): %.200s",
				ErrUnavailable, path, resp.Status, c.cfg.Service, strings.TrimSpace(string(b)))
		}
		return false, ErrNotFound
	case http.StatusGone:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return false, errGone
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// A draining or overloaded instance: another may answer.
	retry = resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway
	return retry, fmt.Errorf("%w: GET %s: %s: %s", ErrUnavailable, path, resp.Status, strings.TrimSpace(string(b)))
}

// configSvcNotFound reports whether a 404's body is config-svc's answer
// for something it does not have: its JSON error (httpserver.ErrorBody)
// with the code not_found.
func configSvcNotFound(body []byte) bool {
	var e httpserver.ErrorBody
	return json.Unmarshal(body, &e) == nil && e.Error.Code == "not_found"
}

// baseURL picks the static URL or, round-robin, a healthy instance from
// Consul (asking Consul directly until the watch has answered). What it
// asks is used for this request only, never stored: the watch may have
// answered meanwhile, and its list (with panic routing's instances) must
// not be overwritten by an older one.
func (c *Client) baseURL(ctx context.Context) (string, error) {
	if c.cfg.BaseURL != "" {
		return strings.TrimSuffix(c.cfg.BaseURL, "/"), nil
	}
	var urls []string
	if p := c.instances.Load(); p != nil {
		urls = *p
	} else {
		insts, _, err := discovery.Healthy(ctx, c.cfg.Consul, c.cfg.Service, 0, 0)
		if err != nil {
			return "", fmt.Errorf("%w: find %s in consul: %w", ErrUnavailable, c.cfg.Service, err)
		}
		urls = instanceURLs(insts)
	}
	if len(urls) == 0 {
		return "", fmt.Errorf("%w: no healthy %s instance in consul", ErrUnavailable, c.cfg.Service)
	}
	i := c.next.Add(1)
	return urls[i%uint64(len(urls))], nil
}

type clientMetrics struct {
	connected, seq, entries, instances prometheus.Gauge
	feedErrors, staleServed, dropped   prometheus.Counter
	changes, fetches, saltFetches      *prometheus.CounterVec
}

func newClientMetrics(reg prometheus.Registerer) *clientMetrics {
	m := &clientMetrics{
		connected:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "configclient_feed_connected", Help: "1 while config-svc's change feed is followed; 0 while it cannot be reached and cached documents may be stale."}),
		seq:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "configclient_feed_seq", Help: "The change-feed position applied."}),
		entries:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "configclient_cached_properties", Help: "Property documents cached."}),
		instances:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "configclient_instances", Help: "Healthy config-svc instances known from Consul."}),
		feedErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "configclient_feed_errors_total", Help: "Failed long polls of the change feed."}),
		staleServed: prometheus.NewCounter(prometheus.CounterOpts{Name: "configclient_stale_served_total", Help: "Lookups answered with a cached document that is due for a refetch (changed, or config-svc unreachable)."}),
		dropped:     prometheus.NewCounter(prometheus.CounterOpts{Name: "configclient_idle_dropped_total", Help: "Cached property documents dropped because no lookup asked for them for the idle TTL."}),
		changes:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "configclient_changes_total", Help: "Changes received from the feed, by kind."}, []string{"kind"}),
		fetches:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "configclient_fetches_total", Help: "Property document fetches, by result (ok, not_found, invalid, error)."}, []string{"result"}),
		saltFetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "configclient_cookieless_salt_fetches_total", Help: "Fetches of a date's cookieless salt (once per date while it is cached), by result (ok, error)."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.seq, m.entries, m.instances, m.feedErrors, m.staleServed, m.dropped, m.changes, m.fetches, m.saltFetches)
	}
	return m
}
