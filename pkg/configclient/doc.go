// Package configclient is how collection, processing and the report
// services read config-svc: property documents (settings, hostnames, API
// secret hashes and the current compiled rules) by tracking ID or property
// ID, a property's whole rule history (processing applies each hit's
// version, live and in reprocessing), and the daily salts of collection's
// cookieless visitor IDs.
//
// # Freshness
//
// Documents are fetched lazily and cached. Run follows config-svc's change
// feed (GET /internal/v1/changes, a long poll on a gap-free sequence
// number): a change to a cached property marks it for a refetch, done at
// once, so a change reaches the pipeline within a second or two and never
// needs a restart. Lookups keep answering with the previous copy until the
// new one has arrived. Unknown tracking IDs are remembered for NegativeTTL
// (at most MaxNegative of them), and forgotten as soon as the feed
// announces them. When config-svc says the feed no longer holds the
// client's position (410, after a long outage), the client re-anchors at
// the head and refetches everything it has cached, still serving the old
// copies meanwhile.
//
// # Scale
//
// The cache holds what lookups use, not every property there is: a
// document no lookup asked for in IdleTTL (24h) is dropped, with its rule
// history. Every ResyncInterval everything cached is refetched anyway, a
// safety net under the feed, spread over the interval and at most
// ResyncRate documents a second (a pass over a large cache then takes
// longer), after the refetches the feed asks for, which never wait behind
// it. Properties in one time zone share one *time.Location.
//
// # Outages
//
// While config-svc is unreachable, cached documents keep being served
// (configclient_feed_connected is 0, configclient_stale_served_total counts
// the lookups answered from the cache, each from a copy that may be stale,
// as it counts at any time those answered from a copy due for a refetch,
// and the log says so once); only keys not cached fail, with
// ErrUnavailable. configclient_feed_connected is 1 again as soon as
// config-svc answers a poll: the first poll after a failure does not wait.
//
// # Cookieless salts
//
// CookielessSalt returns a date's salt, which config-svc makes at random on
// the first request and gives every caller alike. A salt never changes: it
// is fetched once per date (concurrent callers share the fetch) and kept in
// memory while the date can be of use, yesterday to tomorrow in UTC, then
// dropped. While config-svc is unreachable the cached salts keep being
// answered; a date not cached is ErrUnavailable, and collection answers 503
// rather than making an ID up.
//
// # Finding config-svc
//
// A static base URL (-config-svc-url), or the healthy instances of the
// Consul service "config", watched with blocking queries and used
// round-robin. Requests carry identity headers signed as
// tenant.System(Caller) with the shared identity secret.
//
// # Using it
//
//	cc, err := configclient.New(configclient.Config{BaseURL: ..., Caller: "collection", IdentitySecret: secret, Registerer: reg, Log: log})
//	svc.Go(cc.Run)
//	p, err := cc.ByTrackingID(ctx, tid) // p.Compiled().MatchIP(...), p.VerifySecret(s), p.ProcessingShards
//	history, err := cc.RuleHistory(ctx, p.PropertyID) // history.At(hit.ReceivedAt), history.Version(hit.RuleVersion)
//	salt, err := cc.CookielessSalt(ctx, "2026-12-05") // collection's cookieless visitor IDs of that date
package configclient
