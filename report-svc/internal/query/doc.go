// Package query is the report engine both report services share: the
// catalog of reports, dimensions and metrics (catalog.go), the parsing and
// validation of a request (params.go, request.go, dates.go, filter.go), and the
// computation of a result from the rollup rows.
//
// A query reads one rollup: the smallest that holds every dimension it
// shows or filters on (rollups are stored per dimension, not as cross
// products). Its range is split into days and whole final ISO weeks; each
// is read from the day cache or from Cassandra (one partition per day and
// report, every processing shard), merged across shards, and folded into
// the query's rows: dimension values decoded and filtered once per
// distinct value, metrics summed, users sketches merged (sketch.Union). Rates
// and averages are computed from the sums at the end. Results are kept in
// a short-lived cache and served, marked stale, when Cassandra cannot be
// read (engine.go). docs/reports.md is the reference for all of it.
package query
