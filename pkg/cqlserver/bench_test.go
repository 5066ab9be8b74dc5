package cqlserver_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/gocql/gocql"
)

// BenchmarkGocql measures prepared INSERTs and point reads through gocql
// against the embedded server with 1 and 16 concurrent clients (goroutines
// sharing one session, as services do). It reports ops/s. The session is
// cqltest's, so gocql's write coalescing is off; with gocql's default
// (200µs) a single client is capped near 800 requests/s by the driver.
//
//	go test -run '^$' -bench BenchmarkGocql ./cqlserver/
func BenchmarkGocql(b *testing.B) {
	srv, err := cqlserver.New(cqlserver.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	admin, err := cqltest.Cluster(srv.Addr()).CreateSession()
	if err != nil {
		b.Fatal(err)
	}
	mustExec(b, admin, `CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	mustExec(b, admin, `CREATE TABLE bench.rollups (property text, day int, dim text, views bigint, sessions bigint, updated timestamp,
		PRIMARY KEY ((property, day), dim))`)
	admin.Close()
	cc := cqltest.Cluster(srv.Addr())
	cc.Keyspace = "bench"
	cc.NumConns = 2
	s, err := cc.CreateSession()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	const partitions = 1000
	var seq atomic.Int64
	insert := func() error {
		i := seq.Add(1)
		return s.Query(`INSERT INTO rollups (property, day, dim, views, sessions, updated) VALUES (?, ?, ?, ?, ?, ?)`,
			fmt.Sprintf("prop-%d", i%partitions), int(i%7), fmt.Sprintf("dim-%d", i), i, i/2, time.Now()).Exec()
	}
	// Point reads hit rows written by a warm-up.
	for i := 0; i < 20000; i++ {
		if err := insert(); err != nil {
			b.Fatal(err)
		}
	}
	written := seq.Load()
	var readSeq atomic.Int64
	read := func() error {
		i := readSeq.Add(7919)%written + 1
		var views int64
		return s.Query(`SELECT views FROM rollups WHERE property = ? AND day = ? AND dim = ?`,
			fmt.Sprintf("prop-%d", i%partitions), int(i%7), fmt.Sprintf("dim-%d", i)).Scan(&views)
	}

	// An unlogged batch of 50 rows of one partition counts as 50 ops.
	const batchRows = 50
	batchInsert := func() error {
		i := seq.Add(batchRows)
		batch := s.NewBatch(gocql.UnloggedBatch)
		for j := int64(0); j < batchRows; j++ {
			batch.Query(`INSERT INTO rollups (property, day, dim, views, sessions, updated) VALUES (?, ?, ?, ?, ?, ?)`,
				fmt.Sprintf("batch-%d", i%partitions), 1, fmt.Sprintf("dim-%d", i+j), i+j, j, time.Now())
		}
		return s.ExecuteBatch(batch)
	}

	for _, op := range []struct {
		name string
		fn   func() error
		rows int
	}{{"Insert", insert, 1}, {"PointRead", read, 1}, {"UnloggedBatch50", batchInsert, batchRows}} {
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/clients=%d", op.name, clients), func(b *testing.B) {
				var next atomic.Int64
				var wg sync.WaitGroup
				var failed atomic.Value
				start := time.Now()
				for c := 0; c < clients; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							if err := op.fn(); err != nil {
								failed.Store(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
				if op.rows > 1 {
					b.ReportMetric(float64(b.N*op.rows)/elapsed.Seconds(), "rows/s")
				}
			})
		}
	}
}

// BenchmarkGocqlRangeRead measures the report service's access path: one
// partition, a clustering range of 100 rows.
func BenchmarkGocqlRangeRead(b *testing.B) {
	srv, err := cqlserver.New(cqlserver.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	s, err := cqltest.Cluster(srv.Addr()).CreateSession()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	mustExec(b, s, `CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	mustExec(b, s, `CREATE TABLE bench.hourly (property text, day int, hour int, dim text, views bigint, PRIMARY KEY ((property, day), hour, dim))`)
	for h := 0; h < 24; h++ {
		batch := s.NewBatch(gocql.UnloggedBatch)
		for d := 0; d < 200; d++ {
			batch.Query(`INSERT INTO bench.hourly (property, day, hour, dim, views) VALUES ('p', 1, ?, ?, ?)`, h, fmt.Sprintf("d%03d", d), int64(d))
		}
		if err := s.ExecuteBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		iter := s.Query(`SELECT dim, views FROM bench.hourly WHERE property = 'p' AND day = 1 AND hour = ? LIMIT 100`, i%24).Iter()
		var dim string
		var views int64
		n := 0
		for iter.Scan(&dim, &views) {
			n++
		}
		if err := iter.Close(); err != nil || n != 100 {
			b.Fatalf("%d rows, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "queries/s")
}
