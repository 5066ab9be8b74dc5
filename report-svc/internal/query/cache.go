package query

import (
	"container/list"
	"sync"
	"time"
)

// lru is a size-bounded least-recently-used cache whose entries also
// expire. It is safe for concurrent use.
type lru[V any] struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    *list.List
	items map[string]*list.Element
}

type lruEntry[V any] struct {
	key     string
	val     V
	size    int64
	expires time.Time // removed after this
}

func newLRU[V any](maxBytes int64) *lru[V] {
	return &lru[V]{max: maxBytes, ll: list.New(), items: map[string]*list.Element{}}
}

// get returns the value under key unless it expired by now.
func (c *lru[V]) get(key string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	el, ok := c.items[key]
	if !ok {
		return zero, false
	}
	e := el.Value.(*lruEntry[V])
	if now.After(e.expires) {
		c.remove(el)
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

// put stores val under key until expires, evicting the least recently
// used entries beyond the size bound. A value larger than the bound is not
// stored.
func (c *lru[V]) put(key string, val V, size int64, expires time.Time) {
	if size > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
	c.items[key] = c.ll.PushFront(&lruEntry[V]{key: key, val: val, size: size, expires: expires})
	c.size += size
	for c.size > c.max {
		c.remove(c.ll.Back())
	}
}

// grow adds n bytes, memory that a value took on after it was put, to the
// size of the entry under key if same reports that it still holds that
// value, evicting the least recently used entries beyond the size bound.
func (c *lru[V]) grow(key string, same func(V) bool, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return
	}
	e := el.Value.(*lruEntry[V])
	if !same(e.val) {
		return
	}
	e.size += n
	c.size += n
	for c.size > c.max {
		c.remove(c.ll.Back())
	}
}

func (c *lru[V]) remove(el *list.Element) {
	e := el.Value.(*lruEntry[V])
	c.ll.Remove(el)
	delete(c.items, e.key)
	c.size -= e.size
}

// bytes returns the accounted size of the entries.
func (c *lru[V]) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}
