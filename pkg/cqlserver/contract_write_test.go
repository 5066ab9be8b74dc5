package cqlserver_test

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/gocql/gocql"
)

func readV(t testing.TB, s *gocql.Session, table string, k int) (string, bool) {
	t.Helper()
	var v *string
	err := s.Query(fmt.Sprintf(`SELECT v FROM %s WHERE k = ?`, table), k).Scan(&v)
	if errors.Is(err, gocql.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	if v == nil {
		return "", true
	}
	return *v, true
}

// TestLastWriteWins checks per-cell reconciliation by write timestamp,
// whatever the order the writes arrive in.
func TestLastWriteWins(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE kv (k int PRIMARY KEY, v text, w text)`)
	steps := []struct {
		stmt   string
		args   []any
		want   string
		exists bool
	}{
		{`INSERT INTO kv (k, v) VALUES (1, 'a') USING TIMESTAMP 1000`, nil, "a", true},
		{`INSERT INTO kv (k, v) VALUES (1, 'b') USING TIMESTAMP 500`, nil, "a", true},
		{`UPDATE kv USING TIMESTAMP 2000 SET v = 'c' WHERE k = 1`, nil, "c", true},
		{`UPDATE kv USING TIMESTAMP 1999 SET v = 'older' WHERE k = 1`, nil, "c", true},
		// A row deletion at 1500 removes the row marker (1000) but not v (2000).
		{`DELETE FROM kv USING TIMESTAMP 1500 WHERE k = 1`, nil, "c", true},
		{`DELETE FROM kv USING TIMESTAMP 3000 WHERE k = 1`, nil, "", false},
		{`INSERT INTO kv (k, v) VALUES (1, 'shadowed') USING TIMESTAMP 2500`, nil, "", false},
		{`INSERT INTO kv (k, v) VALUES (1, 'back') USING TIMESTAMP 3001`, nil, "back", true},
		{`DELETE v FROM kv USING TIMESTAMP 3002 WHERE k = 1`, nil, "", true},
	}
	for i, st := range steps {
		mustExec(t, s, st.stmt, st.args...)
		got, exists := readV(t, s, "kv", 1)
		if got != st.want || exists != st.exists {
			t.Fatalf("step %d (%s): got %q exists=%v, want %q exists=%v", i, st.stmt, got, exists, st.want, st.exists)
		}
	}
	// Client-side timestamps (gocql's default) order writes too.
	q := s.Query(`INSERT INTO kv (k, v) VALUES (2, 'newer')`).WithTimestamp(5000)
	if err := q.Exec(); err != nil {
		t.Fatal(err)
	}
	if err := s.Query(`INSERT INTO kv (k, v) VALUES (2, 'stale')`).WithTimestamp(4000).Exec(); err != nil {
		t.Fatal(err)
	}
	if got, _ := readV(t, s, "kv", 2); got != "newer" {
		t.Fatalf("got %q", got)
	}
	var wt int64
	if err := s.Query(`SELECT writetime(v) FROM kv WHERE k = 2`).Scan(&wt); err != nil || wt != 5000 {
		t.Fatalf("writetime %d, %v", wt, err)
	}
}

// TestInsertUnset checks that an unset bound value (protocol v4) leaves
// its column as stored, alone and in an unlogged batch, and that an INSERT
// of a new row with an unset column creates the row with that column null:
// the processor writes a rollup row's unchanged sketch as unset.
func TestInsertUnset(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE u (k int PRIMARY KEY, v text, n bigint)`)
	read := func(k int) (v *string, n int64) {
		t.Helper()
		if err := s.Query(`SELECT v, n FROM u WHERE k = ?`, k).Scan(&v, &n); err != nil {
			t.Fatalf("read %d: %v", k, err)
		}
		return v, n
	}
	const insert = `INSERT INTO u (k, v, n) VALUES (?, ?, ?)`
	mustExec(t, s, insert, 1, "kept", int64(1))
	mustExec(t, s, insert, 1, gocql.UnsetValue, int64(2))
	if v, n := read(1); v == nil || *v != "kept" || n != 2 {
		t.Fatalf("after an unset v: got v=%v n=%d, want \"kept\" 2", v, n)
	}

	b := s.NewBatch(gocql.UnloggedBatch)
	b.Query(insert, 1, gocql.UnsetValue, int64(3))
	b.Query(insert, 2, gocql.UnsetValue, int64(4)) // a new row
	if err := s.ExecuteBatch(b); err != nil {
		t.Fatal(err)
	}
	if v, n := read(1); v == nil || *v != "kept" || n != 3 {
		t.Fatalf("after a batch with an unset v: got v=%v n=%d, want \"kept\" 3", v, n)
	}
	if v, n := read(2); v != nil || n != 4 {
		t.Fatalf("new row with an unset v: got v=%v n=%d, want null 4", v, n)
	}
}

func TestDeletes(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE d (p int, c1 int, c2 int, v text, n int, PRIMARY KEY (p, c1, c2))`)
	fill := func() {
		for c1 := 1; c1 <= 3; c1++ {
			for c2 := 1; c2 <= 3; c2++ {
				mustExec(t, s, `INSERT INTO d (p, c1, c2, v, n) VALUES (?, ?, ?, ?, ?)`, 1, c1, c2, "x", c1*10+c2)
			}
		}
	}
	rows := func() []int {
		iter := s.Query(`SELECT n FROM d WHERE p = 1`).Iter()
		var out []int
		var n *int
		for iter.Scan(&n) {
			if n == nil {
				out = append(out, -1)
			} else {
				out = append(out, *n)
			}
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	cases := []struct {
		stmt string
		want []int
	}{
		{`DELETE FROM d WHERE p = 1 AND c1 = 1 AND c2 = 2`, []int{11, 13, 21, 22, 23, 31, 32, 33}},
		{`DELETE FROM d WHERE p = 1 AND c1 = 2`, []int{11, 13, 31, 32, 33}},
		{`DELETE FROM d WHERE p = 1 AND c1 = 3 AND c2 >= 2`, []int{11, 13, 31}},
		{`DELETE FROM d WHERE p = 1 AND c1 > 1`, []int{11, 13}},
		{`DELETE n FROM d WHERE p = 1 AND c1 = 1 AND c2 = 1`, []int{-1, 13}},
		{`DELETE FROM d WHERE p = 1`, nil},
	}
	fill()
	for _, c := range cases {
		mustExec(t, s, c.stmt)
		if got := rows(); !reflect.DeepEqual(got, c.want) {
			t.Fatalf("%s: rows %v, want %v", c.stmt, got, c.want)
		}
	}
	// A range tombstone also shadows older writes that arrive later.
	mustExec(t, s, `DELETE FROM d USING TIMESTAMP 100 WHERE p = 2 AND c1 >= 5`)
	mustExec(t, s, `INSERT INTO d (p, c1, c2, v) VALUES (2, 6, 1, 'old') USING TIMESTAMP 50`)
	mustExec(t, s, `INSERT INTO d (p, c1, c2, v) VALUES (2, 4, 1, 'kept') USING TIMESTAMP 50`)
	var n int
	if err := s.Query(`SELECT count(*) FROM d WHERE p = 2`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("count %d, %v", n, err)
	}
}

func TestTTL(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE sessions (k int PRIMARY KEY, v text, w text)`)
	mustExec(t, s, `INSERT INTO sessions (k, v) VALUES (1, 'short') USING TTL 1`)
	mustExec(t, s, `INSERT INTO sessions (k, v) VALUES (2, 'long') USING TTL 3600`)
	mustExec(t, s, `UPDATE sessions USING TTL 1 SET w = 'cell' WHERE k = 2`)
	if _, ok := readV(t, s, "sessions", 1); !ok {
		t.Fatal("row with TTL 1 not visible right after the write")
	}
	eventually.True(t, 10*time.Second, "row 1 to expire", func() bool {
		_, ok := readV(t, s, "sessions", 1)
		return !ok
	})
	eventually.NoError(t, 10*time.Second, "cell w to expire", func() error {
		var w *string
		if err := s.Query(`SELECT w FROM sessions WHERE k = 2`).Scan(&w); err != nil {
			return err
		}
		if w != nil {
			return errors.New("cell w still visible")
		}
		return nil
	})
	if v, ok := readV(t, s, "sessions", 2); !ok || v != "long" {
		t.Fatalf("row 2: %q %v", v, ok)
	}

	// The table's default TTL applies unless a write says otherwise.
	mustExec(t, s, `CREATE TABLE cache (k int PRIMARY KEY, v text) WITH default_time_to_live = 1`)
	mustExec(t, s, `INSERT INTO cache (k, v) VALUES (1, 'gone soon')`)
	mustExec(t, s, `INSERT INTO cache (k, v) VALUES (2, 'forever') USING TTL 0`)
	var ttl *int
	if err := s.Query(`SELECT ttl(v) FROM cache WHERE k = 2`).Scan(&ttl); err != nil || ttl != nil {
		t.Fatalf("ttl of USING TTL 0: %v %v", ttl, err)
	}
	eventually.True(t, 10*time.Second, "the row with the default TTL to expire", func() bool {
		_, ok := readV(t, s, "cache", 1)
		return !ok
	})
	if _, ok := readV(t, s, "cache", 2); !ok {
		t.Fatal("row written with TTL 0 expired")
	}
}

func TestLightweightTransactions(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE accounts (id text PRIMARY KEY, owner text, balance int)`)

	applied, err := s.Query(`INSERT INTO accounts (id, owner, balance) VALUES (?, ?, ?) IF NOT EXISTS`, "a1", "ann", 10).MapScanCAS(map[string]any{})
	if err != nil || !applied {
		t.Fatalf("first insert: applied=%v err=%v", applied, err)
	}
	existing := map[string]any{}
	applied, err = s.Query(`INSERT INTO accounts (id, owner, balance) VALUES (?, ?, ?) IF NOT EXISTS`, "a1", "bob", 99).MapScanCAS(existing)
	if err != nil || applied {
		t.Fatalf("second insert: applied=%v err=%v", applied, err)
	}
	if existing["owner"] != "ann" || existing["balance"] != 10 || existing["id"] != "a1" {
		t.Fatalf("existing row %v", existing)
	}

	var balance int
	applied, err = s.Query(`UPDATE accounts SET balance = ? WHERE id = ? IF balance = ?`, 20, "a1", 11).ScanCAS(&balance)
	if err != nil || applied || balance != 10 {
		t.Fatalf("conditional update with stale value: applied=%v balance=%d err=%v", applied, balance, err)
	}
	applied, err = s.Query(`UPDATE accounts SET balance = ? WHERE id = ? IF balance = ? AND owner = ?`, 20, "a1", 10, "ann").MapScanCAS(map[string]any{})
	if err != nil || !applied {
		t.Fatalf("conditional update: applied=%v err=%v", applied, err)
	}
	applied, err = s.Query(`UPDATE accounts SET balance = 0 WHERE id = 'nobody' IF EXISTS`).MapScanCAS(map[string]any{})
	if err != nil || applied {
		t.Fatalf("update if exists on a missing row: applied=%v err=%v", applied, err)
	}
	applied, err = s.Query(`DELETE FROM accounts WHERE id = 'a1' IF EXISTS`).MapScanCAS(map[string]any{})
	if err != nil || !applied {
		t.Fatalf("delete if exists: applied=%v err=%v", applied, err)
	}
	applied, err = s.Query(`DELETE FROM accounts WHERE id = 'a1' IF EXISTS`).MapScanCAS(map[string]any{})
	if err != nil || applied {
		t.Fatalf("second delete if exists: applied=%v err=%v", applied, err)
	}
}

// TestLWTWithTTL: a row claimed with INSERT ... IF NOT EXISTS USING TTL
// (config-svc's daily salts) carries its TTL, a second claim gets the
// first one's values, and once the row has expired a claim applies again;
// a claim without USING TTL takes the table's default.
func TestLWTWithTTL(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE salts (day date PRIMARY KEY, salt blob) WITH default_time_to_live = 3600 AND gc_grace_seconds = 10800`)
	day := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	claim := func(salt []byte, using string) (bool, []byte) {
		t.Helper()
		var gotDay time.Time
		var got []byte
		applied, err := s.Query(`INSERT INTO salts (day, salt) VALUES (?, ?) IF NOT EXISTS`+using, day, salt).ScanCAS(&gotDay, &got)
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		if !applied && !gotDay.Equal(day) {
			t.Fatalf("the existing row's day is %v, want %v", gotDay, day)
		}
		return applied, got
	}
	if applied, _ := claim([]byte("first"), " USING TTL 2"); !applied {
		t.Fatal("the first claim was not applied")
	}
	var ttl *int
	if err := s.Query(`SELECT ttl(salt) FROM salts WHERE day = ?`, day).Scan(&ttl); err != nil || ttl == nil || *ttl < 1 || *ttl > 2 {
		t.Fatalf("ttl(salt) = %v, %v; want 1 or 2", ttl, err)
	}
	if applied, got := claim([]byte("second"), " USING TTL 2"); applied || string(got) != "first" {
		t.Fatalf("second claim: applied=%v existing=%q; want not applied, %q", applied, got, "first")
	}
	eventually.NoError(t, 10*time.Second, "a claim after the TTL", func() error {
		if applied, got := claim([]byte("after"), ""); !applied {
			return fmt.Errorf("a claim after the TTL still finds %q", got)
		}
		return nil
	})
	if err := s.Query(`SELECT ttl(salt) FROM salts WHERE day = ?`, day).Scan(&ttl); err != nil || ttl == nil || *ttl < 3500 || *ttl > 3600 {
		t.Fatalf("ttl(salt) of a claim without USING TTL = %v, %v; want the default 3600", ttl, err)
	}
}

// TestLWTRace has 100 clients race to claim one key: exactly one wins.
func TestLWTRace(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE claims (k text PRIMARY KEY, owner int)`)
	const racers = 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners, uncertain := []int{}, 0
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			applied, err := s.Query(`INSERT INTO claims (k, owner) VALUES ('job', ?) IF NOT EXISTS`, i).MapScanCAS(map[string]any{})
			mu.Lock()
			defer mu.Unlock()
			var wto *gocql.RequestErrWriteTimeout
			switch {
			case errors.As(err, &wto):
				uncertain++ // real clusters may time out under contention
			case err != nil:
				t.Errorf("racer %d: %v", i, err)
			case applied:
				winners = append(winners, i)
			}
		}(i)
	}
	wg.Wait()
	if len(winners) > 1 || len(winners) == 0 && uncertain == 0 {
		t.Fatalf("%d winners: %v (%d uncertain)", len(winners), winners, uncertain)
	}
	var owner int
	if err := s.Query(`SELECT owner FROM claims WHERE k = 'job'`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if len(winners) == 1 && owner != winners[0] {
		t.Fatalf("owner %d, winner %d", owner, winners[0])
	}
}

func TestBatches(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE users (id int PRIMARY KEY, name text)`)
	mustExec(t, s, `CREATE TABLE users_by_name (name text, id int, PRIMARY KEY (name, id))`)
	mustExec(t, s, `CREATE TABLE hits (page text PRIMARY KEY, n counter)`)

	b := s.NewBatch(gocql.LoggedBatch)
	b.Query(`INSERT INTO users (id, name) VALUES (?, ?)`, 1, "ann")
	b.Query(`INSERT INTO users_by_name (name, id) VALUES (?, ?)`, "ann", 1)
	b.Query(`UPDATE users SET name = 'anna' WHERE id = 2`)
	if err := s.ExecuteBatch(b); err != nil {
		t.Fatal(err)
	}
	var id int
	if err := s.Query(`SELECT id FROM users_by_name WHERE name = 'ann'`).Scan(&id); err != nil || id != 1 {
		t.Fatalf("users_by_name: %d %v", id, err)
	}
	if v, ok := readName(t, s, 2); !ok || v != "anna" {
		t.Fatalf("user 2: %q", v)
	}

	// An unprepared BEGIN BATCH statement with literals.
	mustExec(t, s, `BEGIN UNLOGGED BATCH
		INSERT INTO users (id, name) VALUES (3, 'cy');
		INSERT INTO users (id, name) VALUES (4, 'di');
		DELETE FROM users WHERE id = 1;
		APPLY BATCH`)
	for id, want := range map[int]bool{1: false, 3: true, 4: true} {
		if _, ok := readName(t, s, id); ok != want {
			t.Fatalf("user %d exists=%v", id, ok)
		}
	}

	// Counter batches; two increments of one counter add up.
	cb := s.NewBatch(gocql.CounterBatch)
	cb.Query(`UPDATE hits SET n = n + 1 WHERE page = ?`, "/a")
	cb.Query(`UPDATE hits SET n = n + 2 WHERE page = ?`, "/a")
	cb.Query(`UPDATE hits SET n = n + 5 WHERE page = ?`, "/b")
	if err := s.ExecuteBatch(cb); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := s.Query(`SELECT n FROM hits WHERE page = '/a'`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("counter /a = %d, %v", n, err)
	}
	mixed := s.NewBatch(gocql.LoggedBatch)
	mixed.Query(`UPDATE hits SET n = n + 1 WHERE page = '/a'`)
	mixed.Query(`INSERT INTO users (id, name) VALUES (9, 'x')`)
	requireError(t, s.ExecuteBatch(mixed), gocql.ErrCodeInvalid, "counter")

	// Conditional batch on one partition.
	mustExec(t, s, `CREATE TABLE ledger (acct text, seq int, amount int, PRIMARY KEY (acct, seq))`)
	lb := s.NewBatch(gocql.LoggedBatch)
	lb.Query(`INSERT INTO ledger (acct, seq, amount) VALUES ('x', 1, 10) IF NOT EXISTS`)
	lb.Query(`INSERT INTO ledger (acct, seq, amount) VALUES ('x', 2, 20)`)
	applied, _, err := s.MapExecuteBatchCAS(lb, map[string]any{})
	if err != nil || !applied {
		t.Fatalf("conditional batch: applied=%v err=%v", applied, err)
	}
	lb2 := s.NewBatch(gocql.LoggedBatch)
	lb2.Query(`INSERT INTO ledger (acct, seq, amount) VALUES ('x', 1, 99) IF NOT EXISTS`)
	lb2.Query(`INSERT INTO ledger (acct, seq, amount) VALUES ('x', 3, 30)`)
	applied, iter, err := s.MapExecuteBatchCAS(lb2, map[string]any{})
	if err != nil || applied {
		t.Fatalf("failing conditional batch: applied=%v err=%v", applied, err)
	}
	if iter != nil {
		iter.Close()
	}
	if err := s.Query(`SELECT count(*) FROM ledger WHERE acct = 'x'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("ledger rows %d, %v", n, err)
	}
}

// TestBatchSizeLimit: as Cassandra (batch_size_fail_threshold, 50 KiB by
// default), a batch of several partitions larger than 50 KiB is refused
// and nothing of it applied; one of a single partition never is
// (CASSANDRA-10876), and a small one of several partitions is applied.
func TestBatchSizeLimit(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE blobs (k int, c int, v blob, PRIMARY KEY (k, c))`)
	big := make([]byte, 30<<10)
	batch := func(keys ...int) error {
		b := s.NewBatch(gocql.UnloggedBatch)
		for i, k := range keys {
			b.Query(`INSERT INTO blobs (k, c, v) VALUES (?, ?, ?)`, k, i, big)
		}
		return s.ExecuteBatch(b)
	}
	count := func(k int) (n int) {
		t.Helper()
		if err := s.Query(`SELECT count(*) FROM blobs WHERE k = ?`, k).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	requireError(t, batch(1, 2), gocql.ErrCodeInvalid, "Batch too large")
	if n := count(1) + count(2); n != 0 {
		t.Fatalf("the refused batch wrote %d rows", n)
	}
	if err := batch(3, 3, 3); err != nil {
		t.Fatalf("a batch of 90 KiB in one partition: %v", err)
	}
	if n := count(3); n != 3 {
		t.Fatalf("one partition's batch wrote %d rows, want 3", n)
	}
	big = big[:1<<10]
	if err := batch(4, 5); err != nil {
		t.Fatalf("a small batch of two partitions: %v", err)
	}
	// Cassandra counts a mutation per keyspace and partition key, whatever
	// the tables: two tables' rows of one key are one partition's batch
	// (as processing's visitor_state and site_users rows of a client).
	mustExec(t, s, `CREATE TABLE blobs_too (k int, c int, v blob, PRIMARY KEY (k, c))`)
	big = big[:30<<10]
	b := s.NewBatch(gocql.UnloggedBatch)
	b.Query(`INSERT INTO blobs (k, c, v) VALUES (?, ?, ?)`, 6, 0, big)
	b.Query(`INSERT INTO blobs_too (k, c, v) VALUES (?, ?, ?)`, 6, 0, big)
	if err := s.ExecuteBatch(b); err != nil {
		t.Fatalf("a batch of 60 KiB in two tables' partitions of one key: %v", err)
	}
}

func readName(t testing.TB, s *gocql.Session, id int) (string, bool) {
	t.Helper()
	var v string
	err := s.Query(`SELECT name FROM users WHERE id = ?`, id).Scan(&v)
	if errors.Is(err, gocql.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

func TestCounters(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE stats (page text, day int, views counter, errors counter, PRIMARY KEY (page, day))`)
	mustExec(t, s, `UPDATE stats SET views = views + 5, errors = errors - 2 WHERE page = '/' AND day = 1`)
	mustExec(t, s, `UPDATE stats SET views = views + ? WHERE page = ? AND day = ?`, int64(3), "/", 1)
	var views, errs int64
	if err := s.Query(`SELECT views, errors FROM stats WHERE page = '/' AND day = 1`).Scan(&views, &errs); err != nil {
		t.Fatal(err)
	}
	if views != 8 || errs != -2 {
		t.Fatalf("views %d errors %d", views, errs)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if err := s.Query(`UPDATE stats SET views = views + 1 WHERE page = '/c' AND day = 1`).Exec(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Query(`SELECT views FROM stats WHERE page = '/c' AND day = 1`).Scan(&views); err != nil || views != 200 {
		t.Fatalf("concurrent increments: %d, %v", views, err)
	}
}

func TestCollections(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE c (k int PRIMARY KEY, l list<int>, s set<text>, m map<text, int>)`)
	type state struct {
		L []int
		S []string
		M map[string]int
	}
	read := func() state {
		var st state
		if err := s.Query(`SELECT l, s, m FROM c WHERE k = 1`).Scan(&st.L, &st.S, &st.M); err != nil {
			t.Fatal(err)
		}
		if len(st.L) == 0 {
			st.L = nil
		}
		if len(st.S) == 0 {
			st.S = nil
		}
		if len(st.M) == 0 {
			st.M = nil
		}
		return st
	}
	steps := []struct {
		stmt string
		args []any
		want state
	}{
		{`INSERT INTO c (k, l, s, m) VALUES (1, [1, 2], {'a', 'b'}, {'x': 1})`, nil, state{[]int{1, 2}, []string{"a", "b"}, map[string]int{"x": 1}}},
		{`UPDATE c SET l = l + [3], s = s + {'c'}, m = m + {'y': 2} WHERE k = 1`, nil, state{[]int{1, 2, 3}, []string{"a", "b", "c"}, map[string]int{"x": 1, "y": 2}}},
		{`UPDATE c SET l = [0] + l WHERE k = 1`, nil, state{[]int{0, 1, 2, 3}, []string{"a", "b", "c"}, map[string]int{"x": 1, "y": 2}}},
		{`UPDATE c SET l[1] = 10, m['x'] = 5 WHERE k = 1`, nil, state{[]int{0, 10, 2, 3}, []string{"a", "b", "c"}, map[string]int{"x": 5, "y": 2}}},
		{`DELETE l[0], m['y'] FROM c WHERE k = 1`, nil, state{[]int{10, 2, 3}, []string{"a", "b", "c"}, map[string]int{"x": 5}}},
		{`UPDATE c SET l = l - [2], s = s - {'a'}, m = m - {'x'} WHERE k = 1`, nil, state{[]int{10, 3}, []string{"b", "c"}, nil}},
		{`UPDATE c SET m = {'z': 3}, s = {} WHERE k = 1`, nil, state{[]int{10, 3}, nil, map[string]int{"z": 3}}},
		{`UPDATE c SET l = ?, s = s + ? WHERE k = 1`, []any{[]int{7}, []string{"q"}}, state{[]int{7}, []string{"q"}, map[string]int{"z": 3}}},
		{`UPDATE c SET m[?] = ? WHERE k = 1`, []any{"w", 4}, state{[]int{7}, []string{"q"}, map[string]int{"w": 4, "z": 3}}},
		{`DELETE m FROM c WHERE k = 1`, nil, state{[]int{7}, []string{"q"}, nil}},
	}
	for i, st := range steps {
		mustExec(t, s, st.stmt, st.args...)
		if got := read(); !reflect.DeepEqual(got, st.want) {
			t.Fatalf("step %d (%s): got %+v, want %+v", i, st.stmt, got, st.want)
		}
	}
	requireError(t, s.Query(`UPDATE c SET l[5] = 1 WHERE k = 1`).Exec(), gocql.ErrCodeInvalid, "out of bound")
}

// TestConcurrentClients runs writers and readers on many partitions at
// once; every acknowledged write must be readable.
func TestConcurrentClients(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE conc (p int, c int, v int, PRIMARY KEY (p, c))`)
	const clients, writes = 16, 50
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < writes; i++ {
				if err := s.Query(`INSERT INTO conc (p, c, v) VALUES (?, ?, ?)`, w%4, w*writes+i, i).Exec(); err != nil {
					t.Error(err)
					return
				}
				var v int
				if err := s.Query(`SELECT v FROM conc WHERE p = ? AND c = ?`, w%4, w*writes+i).Scan(&v); err != nil || v != i {
					t.Errorf("read back: %d %v", v, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	var n int
	if err := s.Query(`SELECT count(*) FROM conc`).Scan(&n); err != nil || n != clients*writes {
		t.Fatalf("count %d, %v", n, err)
	}
}
