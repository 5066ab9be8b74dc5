package store

import (
	"context"

	"github.com/gocql/gocql"
)

// pageQuery reads one page of a partition in the order of its clustering
// uuid column col: base is `SELECT ... WHERE <partition key> = ?`, after
// the last ID of the previous page (the zero UUID: from the first row).
// It asks for one row more than limit, so that trimPage knows whether
// another page follows without the caller reading an empty last page.
func (st *Store) pageQuery(ctx context.Context, base, col string, partition, after gocql.UUID, limit int) *gocql.Query {
	q, args := base, []any{partition}
	if after != (gocql.UUID{}) {
		q += ` AND ` + col + ` > ?`
		args = append(args, after)
	}
	args = append(args, limit+1)
	return st.s.Query(q+` LIMIT ?`, args...).WithContext(ctx)
}

// trimPage cuts the rows read by pageQuery to limit and returns the ID the
// next page starts after: zero when no row follows.
func trimPage[T any](rows []T, limit int, id func(T) gocql.UUID) ([]T, gocql.UUID) {
	if len(rows) <= limit {
		return rows, gocql.UUID{}
	}
	rows = rows[:limit]
	return rows, id(rows[limit-1])
}
