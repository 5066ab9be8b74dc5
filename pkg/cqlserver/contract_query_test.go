package cqlserver_test

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"testing"

	"github.com/acme/analytics/pkg/cqltest"
	"github.com/gocql/gocql"
)

// event is a row of the events table used by the read tests.
type event struct {
	Tenant string
	Day    int
	TS     int
	ID     int
	V      string
	N      int
}

func (e event) key() string { return fmt.Sprintf("%s/%d/%d/%d", e.Tenant, e.Day, e.TS, e.ID) }

// setupEvents creates a table with a composite partition key and mixed
// clustering order, and fills two tenants × two days × 4 ts × 3 ids.
func setupEvents(t *testing.T, s *gocql.Session) []event {
	t.Helper()
	mustExec(t, s, `CREATE TABLE events (tenant text, day int, ts int, id int, v text, n int, tags set<text>,
		PRIMARY KEY ((tenant, day), ts, id)) WITH CLUSTERING ORDER BY (ts DESC, id ASC)`)
	var all []event
	b := s.NewBatch(gocql.UnloggedBatch)
	for _, tenant := range []string{"acme", "globex"} {
		for day := 1; day <= 2; day++ {
			for ts := 10; ts <= 40; ts += 10 {
				for id := 1; id <= 3; id++ {
					e := event{tenant, day, ts, id, fmt.Sprintf("v%d.%d", ts, id), ts + id}
					all = append(all, e)
					b.Query(`INSERT INTO events (tenant, day, ts, id, v, n, tags) VALUES (?, ?, ?, ?, ?, ?, ?)`,
						e.Tenant, e.Day, e.TS, e.ID, e.V, e.N, []string{fmt.Sprintf("id%d", id)})
				}
			}
		}
	}
	if err := s.ExecuteBatch(b); err != nil {
		t.Fatal(err)
	}
	return all
}

func scanEvents(t *testing.T, q *gocql.Query) []event {
	t.Helper()
	iter := q.Iter()
	var out []event
	var e event
	for iter.Scan(&e.Tenant, &e.Day, &e.TS, &e.ID, &e.V, &e.N) {
		out = append(out, e)
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(evs []event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.key()
	}
	return out
}

func TestSelectRestrictions(t *testing.T) {
	s, _ := cqltest.Session(t)
	setupEvents(t, s)
	const cols = `SELECT tenant, day, ts, id, v, n FROM events `
	ev := func(tenant string, day, ts, id int) string {
		return event{Tenant: tenant, Day: day, TS: ts, ID: id}.key()
	}
	cases := []struct {
		name   string
		query  string
		args   []any
		want   []string
		sorted bool // compare as sets (order across partitions is not specified)
	}{
		{name: "partition in clustering order", query: cols + `WHERE tenant = ? AND day = ? AND ts >= 30`, args: []any{"acme", 1},
			want: []string{ev("acme", 1, 40, 1), ev("acme", 1, 40, 2), ev("acme", 1, 40, 3), ev("acme", 1, 30, 1), ev("acme", 1, 30, 2), ev("acme", 1, 30, 3)}},
		{name: "slice both bounds", query: cols + `WHERE tenant = ? AND day = ? AND ts > ? AND ts <= ?`, args: []any{"acme", 1, 10, 20},
			want: []string{ev("acme", 1, 20, 1), ev("acme", 1, 20, 2), ev("acme", 1, 20, 3)}},
		{name: "eq then slice", query: cols + `WHERE tenant = ? AND day = ? AND ts = ? AND id > ?`, args: []any{"acme", 2, 30, 1},
			want: []string{ev("acme", 2, 30, 2), ev("acme", 2, 30, 3)}},
		{name: "in on last clustering column", query: cols + `WHERE tenant = ? AND day = ? AND ts = ? AND id IN (3, 1)`, args: []any{"acme", 2, 30},
			want: []string{ev("acme", 2, 30, 1), ev("acme", 2, 30, 3)}},
		{name: "in on clustering column", query: cols + `WHERE tenant = ? AND day = ? AND ts IN (10, 40) AND id = 2`, args: []any{"globex", 1},
			want: []string{ev("globex", 1, 40, 2), ev("globex", 1, 10, 2)}},
		{name: "order by reversed", query: cols + `WHERE tenant = ? AND day = ? AND ts < 30 ORDER BY ts ASC, id DESC`, args: []any{"acme", 1},
			want: []string{ev("acme", 1, 10, 3), ev("acme", 1, 10, 2), ev("acme", 1, 10, 1), ev("acme", 1, 20, 3), ev("acme", 1, 20, 2), ev("acme", 1, 20, 1)}},
		{name: "limit", query: cols + `WHERE tenant = ? AND day = ? LIMIT 2`, args: []any{"acme", 1},
			want: []string{ev("acme", 1, 40, 1), ev("acme", 1, 40, 2)}},
		{name: "partition key in", query: cols + `WHERE tenant IN ('acme', 'globex') AND day = 2 AND ts = 10 AND id = 1`,
			want: []string{ev("acme", 2, 10, 1), ev("globex", 2, 10, 1)}, sorted: true},
		{name: "per partition limit", query: cols + `WHERE tenant = 'acme' AND day IN (1, 2) PER PARTITION LIMIT 1`,
			want: []string{ev("acme", 1, 40, 1), ev("acme", 2, 40, 1)}, sorted: true},
		{name: "filtering on regular column", query: cols + `WHERE tenant = ? AND day = ? AND n > 42 ALLOW FILTERING`, args: []any{"globex", 2},
			want: []string{ev("globex", 2, 40, 3)}},
		{name: "filtering on clustering column", query: cols + `WHERE tenant = ? AND day = ? AND id = 3 ALLOW FILTERING`, args: []any{"globex", 2},
			want: []string{ev("globex", 2, 40, 3), ev("globex", 2, 30, 3), ev("globex", 2, 20, 3), ev("globex", 2, 10, 3)}},
		{name: "contains", query: cols + `WHERE tenant = ? AND day = ? AND ts = 20 AND tags CONTAINS 'id2' ALLOW FILTERING`, args: []any{"acme", 1},
			want: []string{ev("acme", 1, 20, 2)}},
		{name: "full scan with filtering", query: cols + `WHERE v = 'v10.1' ALLOW FILTERING`,
			want: []string{ev("acme", 1, 10, 1), ev("acme", 2, 10, 1), ev("globex", 1, 10, 1), ev("globex", 2, 10, 1)}, sorted: true},
		{name: "partial partition key with filtering", query: cols + `WHERE tenant = 'acme' AND ts = 40 AND id = 1 ALLOW FILTERING`,
			want: []string{ev("acme", 1, 40, 1), ev("acme", 2, 40, 1)}, sorted: true},
		{name: "no match", query: cols + `WHERE tenant = ? AND day = ?`, args: []any{"nobody", 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := keys(scanEvents(t, s.Query(c.query, c.args...)))
			want := c.want
			if c.sorted {
				got, want = sortedStrings(got), sortedStrings(want)
			}
			if len(got) == 0 && len(want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %v\nwant %v", got, want)
			}
		})
	}
}

func TestTupleSlice(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE series (k int, a int, b int, PRIMARY KEY (k, a, b))`)
	for a := 1; a <= 3; a++ {
		for b := 1; b <= 3; b++ {
			mustExec(t, s, `INSERT INTO series (k, a, b) VALUES (1, ?, ?)`, a, b)
		}
	}
	iter := s.Query(`SELECT a, b FROM series WHERE k = 1 AND (a, b) > (?, ?) AND (a, b) <= (3, 1)`, 1, 2).Iter()
	var got []string
	var a, b int
	for iter.Scan(&a, &b) {
		got = append(got, fmt.Sprintf("%d.%d", a, b))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"1.3", "2.1", "2.2", "2.3", "3.1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestSelectFunctions(t *testing.T) {
	s, _ := cqltest.Session(t)
	setupEvents(t, s)

	var count int64
	if err := s.Query(`SELECT COUNT(*) FROM events WHERE tenant = ? AND day = ?`, "acme", 1).Scan(&count); err != nil || count != 12 {
		t.Fatalf("count(*) = %d, %v", count, err)
	}
	row := map[string]any{}
	if err := s.Query(`SELECT count(1) AS total, max(n) AS top, min(ts) AS first, sum(n) AS s FROM events WHERE tenant = 'acme' AND day = 1`).MapScan(row); err != nil {
		t.Fatal(err)
	}
	// n = ts + id for ts in 10..40 and id in 1..3.
	if row["total"] != int64(12) || row["top"] != 43 || row["first"] != 10 || row["s"] != 3*(10+20+30+40)+4*(1+2+3) {
		t.Fatalf("aggregates: %v", row)
	}
	iter := s.Query(`SELECT DISTINCT tenant, day FROM events`).Iter()
	var parts []string
	var tenant string
	var day int
	for iter.Scan(&tenant, &day) {
		parts = append(parts, fmt.Sprintf("%s/%d", tenant, day))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"acme/1", "acme/2", "globex/1", "globex/2"}; !reflect.DeepEqual(sortedStrings(parts), want) {
		t.Fatalf("distinct %v", parts)
	}

	mustExec(t, s, `CREATE TABLE kv (k int PRIMARY KEY, v text)`)
	mustExec(t, s, `INSERT INTO kv (k, v) VALUES (?, ?) USING TIMESTAMP ? AND TTL ?`, 1, "x", int64(1234567), 3600)
	var wt int64
	var ttl int
	var tok int64
	var alias string
	if err := s.Query(`SELECT v AS value, WRITETIME(v), TTL(v), token(k) FROM kv WHERE k = ?`, 1).Scan(&alias, &wt, &ttl, &tok); err != nil {
		t.Fatal(err)
	}
	if alias != "x" || wt != 1234567 || ttl <= 0 || ttl > 3600 {
		t.Fatalf("value %q writetime %d ttl %d", alias, wt, ttl)
	}
	// Cassandra's Murmur3 token of the int partition key 1.
	if tok != -4069959284402364209 {
		t.Fatalf("token(1) = %d", tok)
	}
}

func TestNamedMarkers(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE kv (k int PRIMARY KEY, v text)`)
	mustExec(t, s, `INSERT INTO kv (k, v) VALUES (:key, :val)`, 5, "five")
	var v string
	if err := s.Query(`SELECT v FROM kv WHERE k = :key`, 5).Scan(&v); err != nil || v != "five" {
		t.Fatalf("got %q, %v", v, err)
	}
}

func TestPaging(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE pages (p int, c int, v text, PRIMARY KEY (p, c))`)
	const partitions, perPartition = 20, 60
	for p := 0; p < partitions; p++ {
		b := s.NewBatch(gocql.UnloggedBatch)
		for c := 0; c < perPartition; c++ {
			b.Query(`INSERT INTO pages (p, c, v) VALUES (?, ?, ?)`, p, c, "x")
		}
		if err := s.ExecuteBatch(b); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("automatic within a partition", func(t *testing.T) {
		iter := s.Query(`SELECT c FROM pages WHERE p = 3`).PageSize(7).Iter()
		var c, want int
		for iter.Scan(&c) {
			if c != want {
				t.Fatalf("row %d has c=%d", want, c)
			}
			want++
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		if want != perPartition {
			t.Fatalf("read %d rows", want)
		}
	})

	t.Run("automatic full scan", func(t *testing.T) {
		iter := s.Query(`SELECT p, c FROM pages`).PageSize(50).Iter()
		seen := map[[2]int]bool{}
		var p, c int
		for iter.Scan(&p, &c) {
			k := [2]int{p, c}
			if seen[k] {
				t.Fatalf("row %v returned twice", k)
			}
			seen[k] = true
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		if len(seen) != partitions*perPartition {
			t.Fatalf("read %d rows", len(seen))
		}
	})

	t.Run("manual page state", func(t *testing.T) {
		var state []byte
		var got []int
		pages := 0
		for {
			iter := s.Query(`SELECT c FROM pages WHERE p = ? AND c >= ?`, 5, 10).PageSize(15).PageState(state).Iter()
			var c int
			n := 0
			for iter.Scan(&c) {
				got = append(got, c)
				n++
			}
			state = iter.PageState()
			if err := iter.Close(); err != nil {
				t.Fatal(err)
			}
			if n > 15 {
				t.Fatalf("page of %d rows", n)
			}
			pages++
			if len(state) == 0 {
				break
			}
			if pages > 10 {
				t.Fatal("too many pages")
			}
		}
		if len(got) != perPartition-10 || got[0] != 10 || got[len(got)-1] != perPartition-1 || !sort.IntsAreSorted(got) {
			t.Fatalf("got %d rows: %v", len(got), got)
		}
	})

	t.Run("limit across pages", func(t *testing.T) {
		iter := s.Query(`SELECT c FROM pages WHERE p = 1 LIMIT 25`).PageSize(10).Iter()
		n := 0
		var c int
		for iter.Scan(&c) {
			n++
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		if n != 25 {
			t.Fatalf("read %d rows", n)
		}
	})

	t.Run("reversed with paging", func(t *testing.T) {
		iter := s.Query(`SELECT c FROM pages WHERE p = 2 ORDER BY c DESC`).PageSize(8).Iter()
		want := perPartition - 1
		var c int
		for iter.Scan(&c) {
			if c != want {
				t.Fatalf("got %d, want %d", c, want)
			}
			want--
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		if want != -1 {
			t.Fatalf("stopped at %d", want)
		}
	})
}

// TestPagingEachRowOnce pages through reads of every shape with page sizes
// that end pages inside a partition, at a partition's last row, at the last
// row of the result and past it, following the page state by hand and
// letting gocql follow it. Each must return the rows of the unpaged read,
// in its order: a page resumes strictly after the last row of the one
// before.
func TestPagingEachRowOnce(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE singles (id uuid PRIMARY KEY, v text)`)
	ids := make([]gocql.UUID, 7)
	for i := range ids {
		ids[i] = gocql.MustRandomUUID()
		mustExec(t, s, `INSERT INTO singles (id, v) VALUES (?, 'x')`, ids[i])
	}
	mustExec(t, s, `CREATE TABLE clustered (p int, c int, v text, PRIMARY KEY (p, c))`)
	// Partition p holds p+1 rows, so that each page size ends some pages
	// inside a partition and others at a partition's last row.
	for p := 0; p < 5; p++ {
		for c := 0; c <= p; c++ {
			mustExec(t, s, `INSERT INTO clustered (p, c, v) VALUES (?, ?, 'x')`, p, c)
		}
	}
	// A composite partition key whose last column buckets by hour, as
	// processing's tables by hour do: hour h of p 1 holds h+1 rows.
	mustExec(t, s, `CREATE TABLE by_hour (p int, h int, c int, PRIMARY KEY ((p, h), c))`)
	for h := 0; h < 5; h++ {
		for c := 0; c <= h; c++ {
			mustExec(t, s, `INSERT INTO by_hour (p, h, c) VALUES (1, ?, ?)`, h, c)
		}
	}

	tests := []struct {
		name string
		stmt string
		args []any
	}{
		{"without clustering columns", `SELECT id FROM singles`, nil},
		{"without clustering columns, LIMIT", `SELECT id FROM singles LIMIT 5`, nil},
		{"without clustering columns, IN", `SELECT id FROM singles WHERE id IN ?`, []any{ids[1:5]}},
		{"all partitions", `SELECT p, c FROM clustered`, nil},
		{"all partitions, LIMIT", `SELECT p, c FROM clustered LIMIT 7`, nil},
		{"all partitions, PER PARTITION LIMIT", `SELECT p, c FROM clustered PER PARTITION LIMIT 2`, nil},
		{"one partition", `SELECT c FROM clustered WHERE p = 4`, nil},
		{"one partition, reversed", `SELECT c FROM clustered WHERE p = 4 ORDER BY c DESC`, nil},
		{"one partition, LIMIT", `SELECT c FROM clustered WHERE p = 4 LIMIT 4`, nil},
		{"one partition, clustering IN", `SELECT c FROM clustered WHERE p = 4 AND c IN (4, 0, 2, 3)`, nil},
		{"all partitions, ALLOW FILTERING", `SELECT p, c FROM clustered WHERE c >= 1 ALLOW FILTERING`, nil},
		{"IN", `SELECT p, c FROM clustered WHERE p IN (4, 1, 2)`, nil},
		{"IN, LIMIT", `SELECT p, c FROM clustered WHERE p IN (4, 1, 2) LIMIT 4`, nil},
		{"IN ? on the last partition key column", `SELECT h, c FROM by_hour WHERE p = 1 AND h IN ?`, []any{[]int{4, 0, 2, 3, 23}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := rowsOf(t, s.Query(tt.stmt, tt.args...).PageSize(0).Iter(), math.MaxInt)
			if len(want) < 4 {
				t.Fatalf("the unpaged read has %d rows, too few to page: %v", len(want), want)
			}
			// A page size equal to the row count fills the first page;
			// Cassandra then returns a page state (unless LIMIT was
			// reached) and the next page is empty, which gocql follows.
			for _, size := range []int{1, 2, 3, len(want), len(want) + 1} {
				if got := readPages(t, s, size, tt.stmt, tt.args...); !reflect.DeepEqual(got, want) {
					t.Errorf("page size %d, page state by hand: got %v, want %v", size, got, want)
				}
				if got := rowsOf(t, s.Query(tt.stmt, tt.args...).PageSize(size).Iter(), 2*len(want)); !reflect.DeepEqual(got, want) {
					t.Errorf("page size %d, paged by gocql: got %v, want %v", size, got, want)
				}
			}
		})
	}
}

// rowsOf reads the rows of an iterator, each as text, and closes it. It
// stops after max rows, so that a read whose paging never ends fails
// instead of hanging.
func rowsOf(t *testing.T, iter *gocql.Iter, max int) []string {
	t.Helper()
	var rows []string
	for row := map[string]any{}; len(rows) < max && iter.MapScan(row); row = map[string]any{} {
		rows = append(rows, fmt.Sprint(row))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// readPages reads a query one page at a time, passing each page's state to
// the next request, and returns the rows of all pages in order.
func readPages(t *testing.T, s *gocql.Session, size int, stmt string, args ...any) []string {
	t.Helper()
	var rows []string
	var state []byte
	for pages := 1; ; pages++ {
		iter := s.Query(stmt, args...).PageSize(size).PageState(state).Iter()
		state = iter.PageState()
		page := rowsOf(t, iter, size+1)
		if len(page) > size {
			t.Fatalf("page %d has %d rows, more than the page size %d", pages, len(page), size)
		}
		rows = append(rows, page...)
		if len(state) == 0 {
			return rows
		}
		if pages > 100 {
			t.Fatalf("paging does not end: %d rows in %d pages", len(rows), pages)
		}
	}
}

// TestTokenRangeScan splits the ring into ranges, as full-table jobs do,
// and checks every row comes back exactly once with a token in its range.
func TestTokenRangeScan(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE scan (k int, c int, v int, PRIMARY KEY (k, c))`)
	const n = 400
	b := s.NewBatch(gocql.UnloggedBatch)
	for i := 0; i < n; i++ {
		b.Query(`INSERT INTO scan (k, c, v) VALUES (?, ?, ?)`, i/2, i%2, i)
		if b.Size() == 100 {
			if err := s.ExecuteBatch(b); err != nil {
				t.Fatal(err)
			}
			b = s.NewBatch(gocql.UnloggedBatch)
		}
	}
	const ranges = 8
	step := uint64(math.MaxUint64) / ranges
	bounds := make([]int64, ranges+1)
	for i := range bounds {
		bounds[i] = int64(uint64(1<<63) + uint64(i)*step)
	}
	bounds[ranges] = math.MaxInt64
	seen := map[int]int{}
	for i := 0; i < ranges; i++ {
		var q *gocql.Query
		if i == 0 {
			q = s.Query(`SELECT token(k), v FROM scan WHERE token(k) >= ? AND token(k) <= ?`, bounds[0], bounds[1])
		} else {
			q = s.Query(`SELECT token(k), v FROM scan WHERE token(k) > ? AND token(k) <= ?`, bounds[i], bounds[i+1])
		}
		iter := q.PageSize(37).Iter()
		var tok int64
		var v int
		for iter.Scan(&tok, &v) {
			seen[v]++
			if tok < bounds[i] || tok > bounds[i+1] || (i > 0 && tok == bounds[i]) {
				t.Fatalf("token %d outside range %d (%d, %d]", tok, i, bounds[i], bounds[i+1])
			}
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != n {
		t.Fatalf("saw %d distinct rows, want %d", len(seen), n)
	}
	for v, c := range seen {
		if c != 1 {
			t.Fatalf("row %d returned %d times", v, c)
		}
	}
	// Rows of a scan come in token order.
	iter := s.Query(`SELECT token(k) FROM scan`).PageSize(33).Iter()
	var prev, tok int64 = math.MinInt64, 0
	for iter.Scan(&tok) {
		if tok < prev {
			t.Fatalf("token %d after %d", tok, prev)
		}
		prev = tok
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBoundLists(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE bl (k int, c int, PRIMARY KEY (k, c))`)
	for k := 0; k < 5; k++ {
		for c := 0; c < 5; c++ {
			mustExec(t, s, `INSERT INTO bl (k, c) VALUES (?, ?)`, k, c)
		}
	}
	iter := s.Query(`SELECT k, c FROM bl WHERE k IN ? AND c IN ? LIMIT ?`, []int{4, 1}, []int{3, 0, 9}, 3).Iter()
	var got []string
	var k, c int
	for iter.Scan(&k, &c) {
		got = append(got, fmt.Sprintf("%d.%d", k, c))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("LIMIT ? returned %v", got)
	}
	for _, g := range got {
		if g != "1.0" && g != "1.3" && g != "4.0" && g != "4.3" {
			t.Fatalf("unexpected row %s in %v", g, got)
		}
	}
}
