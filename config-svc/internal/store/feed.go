package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/gocql/gocql"
)

// FeedBucketSize is the number of sequence numbers per partition of
// config_changes.
const FeedBucketSize = 1000

// maxAppendAttempts bounds the retries of one append under contention.
const maxAppendAttempts = 20

type feedState struct {
	mu    sync.Mutex
	last  int64 // the highest sequence number this instance knows exists
	known bool
}

func bucketOf(seq int64) int64 { return seq / FeedBucketSize }

// AppendChange adds c to the change feed and returns its sequence number.
//
// Numbers are gap-free: the next number is claimed with INSERT ... IF NOT
// EXISTS only after the previous one exists, so a reader that has seen N
// has seen everything up to N. (A row whose claim raced is found by the
// loser, which then moves on to the next number.)
func (st *Store) AppendChange(ctx context.Context, c configclient.Change) (int64, error) {
	st.feed.mu.Lock()
	defer st.feed.mu.Unlock()
	if !st.feed.known {
		head, err := st.Head(ctx)
		if err != nil {
			return 0, err
		}
		st.feed.last, st.feed.known = head, true
	}
	tenantID, _ := gocql.ParseUUID(c.TenantID)
	propertyID, _ := gocql.ParseUUID(c.PropertyID)
	next := st.feed.last + 1
	for range maxAppendAttempts {
		applied, err := st.s.Query(`INSERT INTO config_changes (bucket, seq, kind, tenant_id, property_id, tracking_id, at) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
			bucketOf(next), next, c.Kind, tenantID, propertyID, c.TrackingID, c.At).WithContext(ctx).MapScanCAS(map[string]any{})
		if err != nil {
			return 0, fmt.Errorf("append change: %w", err)
		}
		if applied {
			st.feed.last = next
			// The hint only saves readers a scan; a failure to write it
			// costs nothing but that.
			_ = st.s.Query(`UPDATE config_change_head SET seq = ? WHERE id = 'feed'`, next).WithContext(ctx).Exec()
			return next, nil
		}
		head, err := st.Head(ctx)
		if err != nil {
			return 0, err
		}
		next = max(head, next) + 1
	}
	return 0, errors.New("append change: too much contention on the feed head")
}

// Head returns the highest sequence number in the feed (0 when empty).
func (st *Store) Head(ctx context.Context) (int64, error) {
	var hint int64
	err := st.s.Query(`SELECT seq FROM config_change_head WHERE id = 'feed'`).WithContext(ctx).Scan(&hint)
	if err != nil && !errors.Is(err, gocql.ErrNotFound) {
		return 0, fmt.Errorf("read feed head: %w", err)
	}
	head := hint
	first := bucketOf(hint)
	for b := first; ; b++ {
		var top int64
		err := st.s.Query(`SELECT seq FROM config_changes WHERE bucket = ? ORDER BY seq DESC LIMIT 1`, b).WithContext(ctx).Scan(&top)
		if errors.Is(err, gocql.ErrNotFound) {
			// The hint's own bucket may have expired while the next one
			// holds the head: look one bucket further before stopping.
			if b == first {
				continue
			}
			break
		}
		if err != nil {
			return 0, fmt.Errorf("find feed head: %w", err)
		}
		head = max(head, top)
		if top < (b+1)*FeedBucketSize-1 {
			break // the bucket is not full: nothing follows it
		}
	}
	return head, nil
}

// ChangesSince returns up to limit changes after since, in order. knownHead
// is a sequence number known to exist (or 0): if the changes right after
// since are gone although later ones existed, the feed no longer retains
// since and ErrFeedGone is returned.
func (st *Store) ChangesSince(ctx context.Context, since, knownHead int64, limit int) ([]configclient.Change, error) {
	var out []configclient.Change
	for b := bucketOf(since + 1); len(out) < limit; b++ {
		iter := st.s.Query(`SELECT seq, kind, tenant_id, property_id, tracking_id, at FROM config_changes WHERE bucket = ? AND seq > ? LIMIT ?`,
			b, since, limit-len(out)).WithContext(ctx).Iter()
		var c configclient.Change
		var tenantID, propertyID gocql.UUID
		n := 0
		var last int64
		for iter.Scan(&c.Seq, &c.Kind, &tenantID, &propertyID, &c.TrackingID, &c.At) {
			c.TenantID, c.PropertyID, c.At = tenantID.String(), propertyID.String(), c.At.UTC()
			out = append(out, c)
			last = c.Seq
			n++
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("read changes: %w", err)
		}
		if n == 0 || last < (b+1)*FeedBucketSize-1 {
			break
		}
	}
	if len(out) > 0 && out[0].Seq != since+1 || len(out) == 0 && since < knownHead {
		return nil, ErrFeedGone
	}
	return out, nil
}
