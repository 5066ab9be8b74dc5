// Package cqlserver is an in-memory, Cassandra-compatible CQL server for
// tests and the local stack. It speaks native protocol v4 over TCP, so the
// real gocql driver (and any other driver) talks to it exactly as it talks
// to Apache Cassandra; production runs Cassandra.
//
// # Using it
//
//	srv, err := cqlserver.New(cqlserver.Config{Addr: "127.0.0.1:0"})
//	if err != nil { ... }
//	if err := srv.Start(); err != nil { ... }
//	defer srv.Close()
//	cluster := gocql.NewCluster(srv.Addr())
//
// Tests of other packages should use package cqltest, which starts a server
// per test (or uses a real cluster from CASSANDRA_HOSTS) and hands out a
// fresh keyspace. Stop/Restart and SetUnavailable simulate outages of the
// store for circuit-breaker tests.
//
// # What it implements
//
// Connection setup as drivers expect it (OPTIONS, STARTUP, REGISTER,
// system.local, system.peers, system.peers_v2, the system_schema tables
// with the real schema, schema-change results and events, a consistent
// schema_version, a protocol error in the client's own version for
// unsupported versions so drivers negotiate down to v4). Keyspaces and
// tables (composite partition keys, clustering order, default TTL, ALTER
// TABLE ADD, TRUNCATE), INSERT/UPDATE/DELETE with TTL and timestamps,
// last-write-wins per cell with tombstones, counters, lists, sets and
// maps, lightweight transactions, batches, and SELECT with partition and
// clustering restrictions, token() ranges (Murmur3 tokens identical to
// Cassandra's), ORDER BY, LIMIT, PER PARTITION LIMIT, DISTINCT, ALLOW
// FILTERING, aggregates (count, min, max, sum, avg), writetime() and ttl(),
// and paging. Errors carry Cassandra's codes and messages.
//
// Password authentication as Cassandra's PasswordAuthenticator does it
// (Config.Credentials), so that drivers' logins and Cassandra's refusals
// can be tested; no roles or permissions beyond that.
//
// Not implemented: authorization, compression, secondary indexes,
// materialized views, user types, tuples, durations, static columns,
// GROUP BY, JSON, ALTER TABLE DROP/RENAME, user-defined functions, and
// multi-column slices over clustering columns of mixed order. Such
// statements are refused with an Invalid error. Consistency levels are
// accepted and ignored (there is one replica).
//
// Data expired by TTL is purged gc_grace_seconds after expiry, as
// Cassandra's compaction does; deletion tombstones are never purged (the
// server does not record their local deletion time).
//
// system.local carries a non-standard native_port column with the port the
// client connected to, so drivers that take node addresses from the
// system tables (gocql does) reconnect to the right port when the server
// does not listen on 9042.
//
// # Layout
//
// conn.go and server.go hold the protocol and connection handling; lexer.go,
// parser.go and ast.go the CQL recursive-descent parser; schema.go and
// db.go the catalog, statement cache and DDL; exec_select.go and
// exec_write.go statement execution; storage.go the storage engine;
// types.go and values.go the type system and value encoding; murmur3.go
// the partitioner; system.go the virtual system tables; wal.go durability;
// janitor.go the purge of expired data.
//
// # Concurrency
//
// Each connection reads frames in one goroutine and runs every request in
// its own goroutine; responses are serialized by a writer goroutine.
// Storage locking is per table (a gate taken shared by data operations and
// exclusively by TRUNCATE), per partition index, and per partition, so
// clients writing different partitions proceed in parallel. Single-partition
// writes, lightweight transactions and batches lock the partitions they
// touch (in a canonical order), which makes them atomic and LWTs
// linearizable.
//
// # Durability
//
// Without Config.DataDir everything lives in memory. With it, every applied
// change is appended to a write-ahead log in that directory: schema
// changes as CQL text, data as the merged partition fragments, and
// truncations, each record framed with a length and CRC-32C. Each record
// is written to the log file before its change is acknowledged, so a crash
// of the process (SIGKILL, an OOM kill) loses nothing acknowledged: the
// kernel has it, as it has Cassandra's memory-mapped commit log. The fsync
// is group-committed: a background goroutine syncs the log every
// Config.SyncInterval (100ms by default), so a crash of the machine loses
// at most the writes acknowledged in the last interval, and Close syncs
// everything, so a clean stop loses nothing. (Before 2026-12-06 records
// waited in the process's memory until the sync, and a SIGKILL lost the
// last interval's acknowledged writes: the storage drill lost hits
// processing had written and committed.) When a log segment exceeds both 64 MiB and
// the last snapshot's size (and at Close when it exceeds 16 MiB) a
// snapshot of the full state is written to a temporary file, fsynced and
// renamed, and older segments are deleted: snapshots write about as much
// as is logged however large the state grows, and the directory holds
// under twice the state plus 64 MiB.
// On start the newest snapshot is loaded and later segments are replayed;
// a torn record at the end of the last segment (a crash mid-write) is
// truncated away and everything before it is recovered. Replaying a
// fragment is idempotent, which is what lets snapshots run concurrently
// with writes. A LOCK file (flock) keeps two servers off one directory.
// The node's host_id is kept there too (HOST_ID), so that a server
// restarted on its directory is the same node to drivers, as a restarted
// Cassandra node is: gocql, finding a new host ID at a known address, can
// drop the address from its session altogether.
package cqlserver
