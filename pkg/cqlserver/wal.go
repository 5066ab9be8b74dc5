package cqlserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Durability. With a data directory the server keeps a write-ahead log of
// everything it applies (schema changes as CQL text, data as the merged
// fragments, truncations) in numbered segment files, plus periodic
// snapshots of the whole state. See doc.go for the guarantees.
//
// Files in the data directory:
//
//	wal-NNNNNNNNNNNNNNNN.log       log segments, replayed in order
//	snapshot-NNNNNNNNNNNNNNNN.db   full state covering every segment < NNNN
//	LOCK                           held (flock) while a server uses the dir
//	HOST_ID                        the node's host_id, kept across restarts
//
// Every record is framed as [uint32 length][uint32 CRC-32C][payload]. A
// record that is cut short or fails its checksum ends the log: it is the
// torn tail of a crash and is truncated away on recovery.

const (
	recSchema   byte = 1
	recMutation byte = 2
	recTruncate byte = 3
	recEnd      byte = 4 // last record of a complete snapshot
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// defaultSyncInterval is the group-commit interval of the log.
const defaultSyncInterval = 100 * time.Millisecond

// snapshotThreshold is the least log size after which a snapshot is taken;
// a larger state waits for a log as large as its last snapshot (see
// snapshotDue).
const snapshotThreshold = 64 << 20

// wal is the write-ahead log of a data directory.
type wal struct {
	dir          string
	log          *slog.Logger
	syncInterval time.Duration
	db           *db

	mu       sync.Mutex
	f        *os.File
	seq      uint64 // current segment number
	buf      []byte // a record being written (reused)
	written  int64  // bytes written to the current segment
	err      error  // first write error; the log is unusable after it
	snapSize int64  // bytes of the newest snapshot, written or loaded

	snapFloor int64 // snapshotThreshold; lowered by tests

	snapMu   sync.Mutex // one snapshot at a time
	snapping bool
	snapWG   sync.WaitGroup

	lock  *os.File
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

func segmentName(seq uint64) string  { return fmt.Sprintf("wal-%016d.log", seq) }
func snapshotName(seq uint64) string { return fmt.Sprintf("snapshot-%016d.db", seq) }

func parseSeq(name, prefix, suffix string) (uint64, bool) {
	if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, prefix), suffix), 10, 64)
	return n, err == nil
}

// openWAL locks the directory, recovers the state into d and opens a new
// segment for appends.
func openWAL(dir string, d *db, log *slog.Logger, syncInterval time.Duration) (*wal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	if d.node.hostID, err = loadHostID(dir, d.node.hostID); err != nil {
		unlockDir(lock)
		return nil, err
	}
	w := &wal{dir: dir, log: log, syncInterval: syncInterval, db: d, lock: lock, stop: make(chan struct{}), done: make(chan struct{}),
		snapFloor: snapshotThreshold}
	last, err := w.recover()
	if err != nil {
		unlockDir(lock)
		return nil, err
	}
	w.seq = last + 1
	if w.f, err = os.OpenFile(filepath.Join(dir, segmentName(w.seq)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644); err != nil {
		unlockDir(lock)
		return nil, fmt.Errorf("open log segment: %w", err)
	}
	if err := syncDir(dir); err != nil {
		unlockDir(lock)
		return nil, err
	}
	go w.flushLoop()
	return w, nil
}

// loadHostID returns the host ID kept in the directory, keeping fresh there
// first when it has none. A restarted node keeps its host_id, as a
// Cassandra node does: a driver that finds the same address under a new
// host ID takes it for a node replaced, and gocql, whose policies forget
// hosts by address, may then drop the address altogether when it removes
// the old ID, its session left with no host ("no hosts available in the
// pool") although the server is up.
func loadHostID(dir string, fresh uuid.UUID) (uuid.UUID, error) {
	path := filepath.Join(dir, "HOST_ID")
	b, err := os.ReadFile(path)
	if err == nil {
		id, perr := uuid.Parse(strings.TrimSpace(string(b)))
		if perr != nil {
			return uuid.UUID{}, fmt.Errorf("read %s: %w", path, perr)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return uuid.UUID{}, fmt.Errorf("read host id: %w", err)
	}
	if err := installFile(dir, "HOST_ID", func(f io.Writer) error {
		_, err := io.WriteString(f, fresh.String()+"\n")
		return err
	}); err != nil {
		return uuid.UUID{}, fmt.Errorf("write host id: %w", err)
	}
	return fresh, nil
}

// recover loads the newest complete snapshot and replays the segments that
// follow it. It returns the number of the last segment seen.
func (w *wal) recover() (uint64, error) {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return 0, fmt.Errorf("read data dir: %w", err)
	}
	var snaps, segs []uint64
	for _, e := range entries {
		if n, ok := parseSeq(e.Name(), "snapshot-", ".db"); ok {
			snaps = append(snaps, n)
		}
		if n, ok := parseSeq(e.Name(), "wal-", ".log"); ok {
			// Empty segments (opened, never written) carry nothing.
			if fi, err := e.Info(); err == nil && fi.Size() == 0 {
				os.Remove(filepath.Join(w.dir, e.Name()))
				continue
			}
			segs = append(segs, n)
		}
		if strings.HasSuffix(e.Name(), ".tmp") {
			os.Remove(filepath.Join(w.dir, e.Name())) // an interrupted snapshot
		}
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i] > snaps[j] })
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	var from uint64
	if len(snaps) > 0 {
		from = snaps[0]
		path := filepath.Join(w.dir, snapshotName(from))
		if err := w.loadSnapshot(path); err != nil {
			return 0, err
		}
		if fi, err := os.Stat(path); err == nil {
			w.snapSize = fi.Size()
		}
	}
	last := from
	if last > 0 {
		last--
	}
	for i, n := range segs {
		if n > last {
			last = n
		}
		if n < from {
			continue
		}
		path := filepath.Join(w.dir, segmentName(n))
		good, torn, err := w.replayFile(path)
		if err != nil {
			return 0, err
		}
		if torn {
			if i != len(segs)-1 {
				return 0, fmt.Errorf("write-ahead log segment %s is corrupt at offset %d and later segments exist; refusing to start", path, good)
			}
			w.log.Warn("truncating torn tail of the write-ahead log", slog.String("file", segmentName(n)), slog.Int64("offset", good))
			if err := os.Truncate(path, good); err != nil {
				return 0, fmt.Errorf("truncate torn log tail: %w", err)
			}
		}
	}
	return last, nil
}

// readRecord reads one framed record; io.EOF at a clean end, errTorn for a
// short or corrupt record.
var errTorn = errors.New("torn record")

func readRecord(r *bufio.Reader) ([]byte, error) {
	var hdr [8]byte
	n, err := io.ReadFull(r, hdr[:])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil || n < 8 {
		return nil, errTorn
	}
	size := binary.BigEndian.Uint32(hdr[:4])
	if size > 1<<30 {
		return nil, errTorn
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, errTorn
	}
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, errTorn
	}
	return payload, nil
}

func frameRecord(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, crcTable))
	return append(dst, payload...)
}

// replayFile applies the records of a log segment. It returns the offset
// after the last good record and whether the file ended with a torn record.
func (w *wal) replayFile(path string) (good int64, torn bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		payload, err := readRecord(r)
		if err == io.EOF {
			return good, false, nil
		}
		if err != nil {
			return good, true, nil
		}
		if err := w.applyRecord(payload); err != nil {
			return good, false, fmt.Errorf("replay %s at offset %d: %w", filepath.Base(path), good, err)
		}
		good += int64(8 + len(payload))
	}
}

// loadSnapshot applies a snapshot file. Snapshots are written under a
// temporary name and renamed once complete, so a snapshot without its end
// record means disk corruption and recovery stops rather than guess.
func (w *wal) loadSnapshot(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		payload, err := readRecord(r)
		if err != nil {
			return fmt.Errorf("snapshot %s is incomplete or corrupt; refusing to start", path)
		}
		if payload[0] == recEnd {
			return nil
		}
		if err := w.applyRecord(payload); err != nil {
			return fmt.Errorf("load snapshot %s: %w", filepath.Base(path), err)
		}
	}
}

// applyRecord replays one record into the database.
func (w *wal) applyRecord(p []byte) error {
	d := w.db
	switch p[0] {
	case recEnd:
		return nil
	case recSchema:
		text := string(p[1:])
		if rest, ok := strings.CutPrefix(text, "TABLE "); ok {
			idText, cql, _ := strings.Cut(rest, " ")
			id, err := uuid.Parse(idText)
			if err != nil {
				return fmt.Errorf("table record: %w", err)
			}
			parsed, err := parseCQL(cql)
			if err != nil {
				return fmt.Errorf("table record: %w", err)
			}
			ct, ok := parsed.stmt.(*createTableStmt)
			if !ok {
				return fmt.Errorf("table record is not CREATE TABLE")
			}
			return d.replaceTable(id, ct)
		}
		parsed, err := parseCQL(text)
		if err != nil {
			return fmt.Errorf("schema record: %w", err)
		}
		switch s := parsed.stmt.(type) {
		case *createKeyspaceStmt:
			s.ifNotExists = true
		case *dropKeyspaceStmt:
			s.ifExists = true
		case *dropTableStmt:
			s.ifExists = true
		}
		_, err = d.applyDDL(parsed.stmt, "", nil, false)
		return err
	case recTruncate:
		if len(p) < 17 {
			return fmt.Errorf("short truncate record")
		}
		id, _ := uuid.FromBytes(p[1:17])
		d.mu.RLock()
		t := d.tablesByID[id]
		d.mu.RUnlock()
		if t != nil {
			t.store.gate.Lock()
			t.store.reset()
			t.store.gate.Unlock()
		}
		return nil
	case recMutation:
		dec := &decoder{b: p[1:]}
		n := dec.uvarint()
		now := int32(time.Now().Unix())
		for i := uint64(0); i < n && dec.err == nil; i++ {
			id := dec.uuid()
			key := dec.bytes()
			f := dec.fragment()
			if dec.err != nil {
				break
			}
			d.mu.RLock()
			t := d.tablesByID[id]
			d.mu.RUnlock()
			if t == nil {
				continue // the table was dropped later
			}
			t.store.gate.RLock()
			part := t.store.getOrCreate(key, murmur3Token(key))
			part.mu.Lock()
			t.store.apply(part, f, now, t.elemCompare)
			part.mu.Unlock()
			t.store.gate.RUnlock()
		}
		return dec.err
	}
	return fmt.Errorf("unknown record type %d", p[0])
}

// ---- appending ----

func (w *wal) append(payload []byte) {
	rec := frameRecord(make([]byte, 0, len(payload)+8), payload)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.f == nil {
		return
	}
	// Written to the file before the change is acknowledged, so that a
	// crash of the process loses nothing acknowledged (the kernel has it,
	// as Cassandra's commit log, memory-mapped, survives a crash of
	// Cassandra); only a crash of the machine loses what the next sync
	// would have made durable.
	w.buf = append(w.buf, rec...)
	w.writeLocked()
}

// writeLocked writes the buffer to the segment (without fsync).
func (w *wal) writeLocked() {
	if len(w.buf) == 0 || w.err != nil {
		return
	}
	n, err := w.f.Write(w.buf)
	w.written += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write log segment: %w", err)
		w.log.Error("write-ahead log write failed; further writes are not durable", slog.Any("err", err))
	}
	w.buf = w.buf[:0]
}

func (w *wal) appendSchema(cql string) {
	w.append(append([]byte{recSchema}, cql...))
}

func (w *wal) appendTruncate(id uuid.UUID) {
	w.append(append([]byte{recTruncate}, id[:]...))
}

func (w *wal) appendMutations(targets []*writeTarget, frags []*fragment) {
	e := &encoder{b: make([]byte, 0, 256)}
	e.b = append(e.b, recMutation)
	e.uvarint(uint64(len(frags)))
	for i, f := range frags {
		e.uuid(targets[i].table.id)
		e.bytes(targets[i].key)
		e.fragment(f)
	}
	w.append(e.b)
}

// sync writes and fsyncs everything appended so far.
func (w *wal) sync() error {
	w.mu.Lock()
	w.writeLocked()
	f, err := w.f, w.err
	due := w.snapshotDue(w.written)
	w.mu.Unlock()
	if err != nil || f == nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync log segment: %w", err)
	}
	if due {
		w.maybeSnapshot()
	}
	return nil
}

// snapshotDue reports whether, with logged bytes in the segment since the
// last snapshot, the next is due: once the log has outgrown both the
// threshold and the last snapshot. A snapshot writes the whole state, so a
// fixed threshold would make a growing state's snapshots ever more costly
// per byte logged (the local stack, hours into its demo traffic, would
// spend its time writing snapshots); this way snapshots write at most
// about what is logged, and the files on disk stay under twice the state
// plus the threshold. w.mu is held.
func (w *wal) snapshotDue(logged int64) bool {
	return logged > max(w.snapFloor, w.snapSize)
}

func (w *wal) flushLoop() {
	defer close(w.done)
	t := time.NewTicker(w.syncInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			if err := w.sync(); err != nil {
				w.log.Error("write-ahead log sync failed", slog.Any("err", err))
			}
		}
	}
}

// maybeSnapshot starts a background snapshot unless one is running.
func (w *wal) maybeSnapshot() {
	w.snapMu.Lock()
	if w.snapping {
		w.snapMu.Unlock()
		return
	}
	w.snapping = true
	w.snapWG.Add(1)
	w.snapMu.Unlock()
	go func() {
		defer w.snapWG.Done()
		if err := w.snapshot(); err != nil {
			w.log.Error("snapshot failed", slog.Any("err", err))
		}
		w.snapMu.Lock()
		w.snapping = false
		w.snapMu.Unlock()
	}()
}

// rotate starts a new segment and returns its number; everything before it
// is on disk.
func (w *wal) rotate() (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeLocked()
	if w.err != nil {
		return 0, w.err
	}
	if err := w.f.Sync(); err != nil {
		return 0, fmt.Errorf("sync log segment: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return 0, fmt.Errorf("close log segment: %w", err)
	}
	w.seq++
	f, err := os.OpenFile(filepath.Join(w.dir, segmentName(w.seq)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		w.err = fmt.Errorf("open log segment: %w", err)
		w.f = nil
		return 0, w.err
	}
	w.f, w.written = f, 0
	return w.seq, syncDir(w.dir)
}

// snapshot writes the full state to a snapshot file covering every segment
// before a fresh one, then deletes those segments. Writes continue during
// the snapshot: they go to the new segment, and because replaying a
// fragment is idempotent it does not matter whether the snapshot also
// caught them.
func (w *wal) snapshot() error {
	seq, err := w.rotate()
	if err != nil {
		return err
	}
	var size int64
	err = installFile(w.dir, snapshotName(seq), func(f io.Writer) error {
		bw := bufio.NewWriterSize(f, 1<<20)
		err := w.db.dump(func(payload []byte) error {
			n, err := bw.Write(frameRecord(nil, payload))
			size += int64(n)
			return err
		})
		if err == nil {
			var n int
			n, err = bw.Write(frameRecord(nil, []byte{recEnd}))
			size += int64(n)
		}
		if err == nil {
			err = bw.Flush()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	w.mu.Lock()
	w.snapSize = size
	w.mu.Unlock()
	// Older segments and snapshots are now redundant.
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("read data dir: %w", err)
	}
	for _, e := range entries {
		if n, ok := parseSeq(e.Name(), "wal-", ".log"); ok && n < seq {
			os.Remove(filepath.Join(w.dir, e.Name()))
		}
		if n, ok := parseSeq(e.Name(), "snapshot-", ".db"); ok && n < seq {
			os.Remove(filepath.Join(w.dir, e.Name()))
		}
	}
	w.log.Debug("snapshot written", slog.String("file", snapshotName(seq)))
	return nil
}

// closeWAL stops the flusher, writes a final snapshot when the log is
// large, and syncs everything.
func (w *wal) closeWAL() error {
	var err error
	w.close.Do(func() {
		close(w.stop)
		<-w.done
		err = w.sync()
		w.snapWG.Wait()
		w.mu.Lock()
		big := w.written > snapshotThreshold/4
		w.mu.Unlock()
		if err == nil && big {
			err = w.snapshot()
		}
		w.mu.Lock()
		if w.f != nil {
			if cerr := w.f.Close(); err == nil {
				err = cerr
			}
			w.f = nil
		}
		w.mu.Unlock()
		unlockDir(w.lock)
	})
	return err
}

// dump emits the whole state as records: keyspaces, tables, then one
// mutation record per partition holding its full state.
func (d *db) dump(emit func([]byte) error) error {
	for _, ks := range d.userKeyspaces() {
		if err := emit(append([]byte{recSchema}, ks.cql()...)); err != nil {
			return err
		}
	}
	tables := d.userTables()
	for _, t := range tables {
		if err := emit(append([]byte{recSchema}, "TABLE "+t.id.String()+" "+t.cql()...)); err != nil {
			return err
		}
	}
	for _, t := range tables {
		var err error
		t.store.gate.RLock()
		t.store.partitionsFrom(-1<<63, nil, func(p *partition) bool {
			e := &encoder{b: []byte{recMutation}}
			e.uvarint(1)
			e.uuid(t.id)
			e.bytes(p.key)
			p.mu.RLock()
			e.fragment(partitionState(p))
			p.mu.RUnlock()
			err = emit(e.b)
			return err == nil
		})
		t.store.gate.RUnlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// partitionState returns a fragment holding a partition's full state; the
// caller holds p.mu.
func partitionState(p *partition) *fragment {
	f := &fragment{del: p.del, rts: p.rts}
	if p.rows == nil {
		if p.single != nil {
			f.rows = []*row{p.single}
		}
		return f
	}
	f.rows = make([]*row, 0, p.rows.Len())
	p.rows.Ascend(func(r *row) bool {
		f.rows = append(f.rows, r)
		return true
	})
	return f
}

// ---- record encoding ----

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) uuid(id uuid.UUID) {
	e.b = append(e.b, id[:]...)
}

// bytes writes a length-prefixed byte string; nil is distinct from empty.
func (e *encoder) bytes(b []byte) {
	if b == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(b)) + 1)
	e.b = append(e.b, b...)
}

func (e *encoder) components(c [][]byte) {
	e.uvarint(uint64(len(c)))
	for _, x := range c {
		e.bytes(x)
	}
}

func (e *encoder) cell(c *cell) {
	e.varint(c.ts)
	e.varint(int64(c.exp))
	e.varint(int64(c.ttl))
	if c.tomb {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
	e.bytes(c.value)
}

func (e *encoder) fragment(f *fragment) {
	e.varint(f.del)
	e.uvarint(uint64(len(f.rts)))
	for _, rt := range f.rts {
		e.bound(rt.start)
		e.bound(rt.end)
		e.varint(rt.ts)
	}
	e.uvarint(uint64(len(f.rows)))
	for _, r := range f.rows {
		e.components(r.ck)
		e.varint(r.marker.ts)
		e.varint(int64(r.marker.exp))
		e.varint(int64(r.marker.ttl))
		e.varint(r.del)
		n := 0
		for i := range r.cells {
			if r.cells[i].present() {
				n++
			}
		}
		e.uvarint(uint64(n))
		for slot := range r.cells {
			c := &r.cells[slot]
			if !c.present() {
				continue
			}
			e.uvarint(uint64(slot))
			if c.coll == nil {
				e.b = append(e.b, 0)
				e.cell(c)
				continue
			}
			e.b = append(e.b, 1)
			e.varint(c.coll.del)
			e.uvarint(uint64(len(c.coll.elems)))
			for i := range c.coll.elems {
				e.bytes(c.coll.elems[i].key)
				e.cell(&c.coll.elems[i].c)
			}
		}
	}
}

func (e *encoder) bound(b ckBound) {
	if b.inclusive {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
	e.components(b.prefix)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errors.New("malformed record")
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uuid() uuid.UUID {
	var id uuid.UUID
	if d.err != nil || len(d.b) < 16 {
		d.fail()
		return id
	}
	copy(id[:], d.b)
	d.b = d.b[16:]
	return id
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return nil
	}
	n--
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	out := make([]byte, n)
	copy(out, d.b)
	d.b = d.b[n:]
	return out
}

func (d *decoder) components() [][]byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	out := make([][]byte, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		out = append(out, d.bytes())
	}
	return out
}

func (d *decoder) cell() cell {
	c := cell{ts: d.varint(), exp: int32(d.varint()), ttl: int32(d.varint())}
	c.tomb = d.byte1() == 1
	c.value = d.bytes()
	return c
}

func (d *decoder) bound() ckBound {
	inc := d.byte1() == 1
	return ckBound{inclusive: inc, prefix: d.components()}
}

func (d *decoder) fragment() *fragment {
	f := &fragment{del: d.varint()}
	nrt := d.uvarint()
	for i := uint64(0); i < nrt && d.err == nil; i++ {
		rt := rangeTombstone{start: d.bound(), end: d.bound()}
		rt.ts = d.varint()
		f.rts = append(f.rts, rt)
	}
	nrows := d.uvarint()
	for i := uint64(0); i < nrows && d.err == nil; i++ {
		r := newRow(d.components())
		r.marker = liveness{ts: d.varint(), exp: int32(d.varint()), ttl: int32(d.varint())}
		r.del = d.varint()
		ncells := d.uvarint()
		for j := uint64(0); j < ncells && d.err == nil; j++ {
			slot := int(d.uvarint())
			if slot > 1<<16 {
				d.fail()
				break
			}
			for len(r.cells) <= slot {
				r.cells = append(r.cells, emptyCell)
			}
			if d.byte1() == 0 {
				r.cells[slot] = d.cell()
				continue
			}
			cc := &collCells{del: d.varint()}
			ne := d.uvarint()
			for k := uint64(0); k < ne && d.err == nil; k++ {
				key := d.bytes()
				cc.elems = append(cc.elems, collElem{key: key, c: d.cell()})
			}
			r.cells[slot] = cell{ts: noTimestamp, coll: cc}
		}
		f.rows = append(f.rows, r)
	}
	return f
}

// installFile writes the file name of dir whole or not at all: through
// write into a temporary file, synced, renamed to name, and the directory
// synced. A temporary file left by a crash is written over by the next.
func installFile(dir, name string, write func(io.Writer) error) error {
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open data dir: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync data dir: %w", err)
	}
	return nil
}
