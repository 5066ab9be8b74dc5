package cqlserver

import (
	"crypto/md5"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
	"github.com/google/uuid"
)

// db is the storage and execution engine behind the protocol layer: the
// schema catalog, table data, statement caches and the write-ahead log.
// It knows nothing about connections or frames.
type db struct {
	log *slog.Logger

	mu            sync.RWMutex // guards keyspaces, tablesByID, schemaVersion
	keyspaces     map[string]*keyspace
	tablesByID    map[uuid.UUID]*table
	schemaVersion uuid.UUID

	lastMicros atomic.Int64 // last server-assigned write timestamp

	cacheMu  sync.RWMutex
	cache    map[cacheKey]*compiled // parsed and compiled statements by query text
	prepared map[[16]byte]*compiled // prepared statements by ID

	wal *wal // nil without a data directory

	node nodeInfo

	// onSchemaChange is called after each schema change (outside locks).
	onSchemaChange func(schemaChange)
}

// nodeInfo is what system.local says about this node.
type nodeInfo struct {
	hostID      uuid.UUID
	clusterName string
	dataCenter  string
	rack        string
	tokens      []string
}

type cacheKey struct {
	keyspace string
	query    string
}

// maxCachedStatements bounds the unprepared statement cache; it is cleared
// when full (statements are cheap to recompile).
const maxCachedStatements = 4096

func newDB(log *slog.Logger) *db {
	d := &db{
		log:        log,
		keyspaces:  map[string]*keyspace{},
		tablesByID: map[uuid.UUID]*table{},
		cache:      map[cacheKey]*compiled{},
		prepared:   map[[16]byte]*compiled{},
		node: nodeInfo{
			hostID:      uuid.New(),
			clusterName: "cqlserver",
			dataCenter:  "datacenter1",
			rack:        "rack1",
		},
	}
	d.node.tokens = evenTokens(16)
	d.schemaVersion = uuid.New()
	d.installSystemKeyspaces()
	return d
}

// evenTokens spreads n tokens evenly over the Murmur3 ring; the single node
// owns them all, but drivers expect a realistic token list.
func evenTokens(n int) []string {
	out := make([]string, n)
	step := uint64(1<<63) / uint64(n) * 2
	for i := 0; i < n; i++ {
		out[i] = fmt.Sprint(int64(uint64(1<<63) + uint64(i)*step))
	}
	return out
}

// nowMicros returns a server write timestamp: wall-clock microseconds,
// strictly increasing across calls so that two writes by the same server
// never tie.
func (d *db) nowMicros() int64 {
	for {
		now := time.Now().UnixMicro()
		last := d.lastMicros.Load()
		if now <= last {
			now = last + 1
		}
		if d.lastMicros.CompareAndSwap(last, now) {
			return now
		}
	}
}

// session is the per-connection state the engine needs.
type session struct {
	keyspace string
	local    *net.TCPAddr // the server address the client connected to
}

// options are the query parameters of one execution.
type options struct {
	values       []*primitive.Value
	named        map[string]*primitive.Value
	pageSize     int32
	pagingState  []byte
	timestamp    *int64
	consistency  primitive.ConsistencyLevel
	skipMetadata bool
}

// compiled is a parsed statement bound to the schema: what a PREPARE
// returns and what EXECUTE and QUERY run. It is immutable; when a table it
// depends on changes, it is recompiled (or, for prepared statements, the
// client is told to re-prepare).
type compiled struct {
	id        [16]byte
	query     string
	keyspace  string // the session keyspace it was compiled in
	stmt      statement
	markers   []*bindMarker
	specs     []receiver
	pkIndices []uint16
	result    []*message.ColumnMetadata // SELECT result columns; nil otherwise
	plan      plan
	tables    []*table // tables the plan depends on
}

// plan executes a compiled statement.
type plan interface {
	execute(x *execCtx) (message.Message, error)
}

// execCtx carries one execution's inputs.
type execCtx struct {
	db   *db
	sess *session
	opts *options
	bind *bindings
	now  time.Time
	comp *compiled
}

// stale reports whether a table the statement depends on changed.
func (c *compiled) stale() bool {
	for _, t := range c.tables {
		if t.stale.Load() {
			return true
		}
	}
	return false
}

// compile parses (through the cache) and compiles a statement.
func (d *db) compile(sess *session, query string) (*compiled, error) {
	key := cacheKey{keyspace: sess.keyspace, query: query}
	d.cacheMu.RLock()
	c := d.cache[key]
	d.cacheMu.RUnlock()
	if c != nil && !c.stale() {
		return c, nil
	}
	p, err := parseCQL(query)
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			return nil, errSyntax(se.msg)
		}
		return nil, err
	}
	c, err = d.compileParsed(sess.keyspace, query, p)
	if err != nil {
		return nil, err
	}
	d.cacheMu.Lock()
	if len(d.cache) >= maxCachedStatements {
		d.cache = map[cacheKey]*compiled{}
	}
	d.cache[key] = c
	d.cacheMu.Unlock()
	return c, nil
}

func (d *db) compileParsed(ks, query string, p *parsed) (*compiled, error) {
	c := &compiled{query: query, keyspace: ks, stmt: p.stmt, markers: p.markers, specs: make([]receiver, len(p.markers))}
	c.id = md5.Sum([]byte(ks + query))
	var err error
	switch s := p.stmt.(type) {
	case *selectStmt:
		err = d.compileSelect(c, s)
	case *insertStmt, *updateStmt, *deleteStmt:
		err = d.compileModification(c, s)
	case *batchStmt:
		err = d.compileBatch(c, s)
	case *unsupportedStmt:
		err = errInvalid("%s statements are not supported by this server", s.what)
	default:
		c.plan = ddlPlan{stmt: p.stmt}
	}
	if err != nil {
		return nil, err
	}
	for i, r := range c.specs {
		if r.typ == nil {
			return nil, errInvalid("bind marker %d has no receiver", i)
		}
	}
	return c, nil
}

// prepare compiles a statement and registers it for EXECUTE.
func (d *db) prepare(sess *session, query string) (*compiled, error) {
	c, err := d.compile(sess, query)
	if err != nil {
		return nil, err
	}
	d.cacheMu.Lock()
	d.prepared[c.id] = c
	d.cacheMu.Unlock()
	return c, nil
}

// preparedByID returns a prepared statement, recompiling it if the schema
// changed in a compatible way, or an Unprepared error.
func (d *db) preparedByID(id []byte) (*compiled, error) {
	var key [16]byte
	if len(id) != len(key) {
		return nil, errUnprepared(id)
	}
	copy(key[:], id)
	d.cacheMu.RLock()
	c := d.prepared[key]
	d.cacheMu.RUnlock()
	if c == nil {
		return nil, errUnprepared(id)
	}
	if c.stale() {
		// Like Cassandra, drop statements whose tables changed; the driver
		// re-prepares them and picks up the new metadata.
		d.cacheMu.Lock()
		delete(d.prepared, key)
		d.cacheMu.Unlock()
		return nil, errUnprepared(id)
	}
	return c, nil
}

// run executes a compiled statement.
func (d *db) run(sess *session, c *compiled, opts *options) (message.Message, error) {
	values := opts.values
	if len(opts.named) > 0 {
		values = make([]*primitive.Value, len(c.markers))
		for i, m := range c.markers {
			name := c.specs[i].name
			if m.name != "" {
				name = m.name
			}
			v, ok := opts.named[name]
			if !ok {
				return nil, errInvalid("No value provided for bind variable %s", name)
			}
			values[i] = v
		}
	}
	if len(values) != len(c.markers) {
		return nil, errInvalid("There were %d markers(?) in CQL but %d bound variables", len(c.markers), len(values))
	}
	return c.plan.execute(newExecCtx(d, sess, opts, c, values))
}

func newExecCtx(d *db, sess *session, opts *options, c *compiled, values []*primitive.Value) *execCtx {
	now := time.Now()
	return &execCtx{db: d, sess: sess, opts: opts, bind: &bindings{values: values, now: now}, now: now, comp: c}
}

// keyspaceName resolves the keyspace of a statement.
func keyspaceName(ref tableRef, sessKS string) (string, error) {
	if ref.keyspace != "" {
		return ref.keyspace, nil
	}
	if sessKS == "" {
		return "", errInvalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
	}
	return sessKS, nil
}

// lookupTable resolves a table reference for DML.
func (d *db) lookupTable(ref tableRef, sessKS string) (*table, error) {
	ksName, err := keyspaceName(ref, sessKS)
	if err != nil {
		return nil, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	ks := d.keyspaces[ksName]
	if ks == nil {
		return nil, errInvalid("Keyspace %s does not exist", ksName)
	}
	t := ks.tables[ref.name]
	if t == nil {
		return nil, errInvalid("table %s does not exist", ref.name)
	}
	return t, nil
}

// ddlPlan executes schema statements and USE.
type ddlPlan struct{ stmt statement }

func (p ddlPlan) execute(x *execCtx) (message.Message, error) {
	if u, ok := p.stmt.(*useStmt); ok {
		x.db.mu.RLock()
		_, exists := x.db.keyspaces[u.keyspace]
		x.db.mu.RUnlock()
		if !exists {
			return nil, errInvalid("Keyspace '%s' does not exist", u.keyspace)
		}
		x.sess.keyspace = u.keyspace
		return &message.SetKeyspaceResult{Keyspace: u.keyspace}, nil
	}
	if t, ok := p.stmt.(*truncateStmt); ok {
		tbl, err := x.db.lookupTable(t.table, x.sess.keyspace)
		if err != nil {
			return nil, err
		}
		if tbl.virtual != nil {
			return nil, errInvalid("Cannot truncate a system table")
		}
		x.db.truncate(tbl)
		return &message.VoidResult{}, nil
	}
	ch, err := x.db.applyDDL(p.stmt, x.sess.keyspace, nil, true)
	if err != nil {
		return nil, err
	}
	if ch == nil { // IF [NOT] EXISTS made it a no-op
		return &message.VoidResult{}, nil
	}
	return &message.SchemaChangeResult{ChangeType: ch.change, Target: ch.target, Keyspace: ch.keyspace, Object: ch.object}, nil
}

// truncate removes all rows of a table and logs it.
func (d *db) truncate(t *table) {
	t.store.gate.Lock()
	t.store.idxMu.Lock()
	t.store.reset()
	t.store.idxMu.Unlock()
	if d.wal != nil {
		d.wal.appendTruncate(t.id)
	}
	t.store.gate.Unlock()
}

// applyDDL applies a schema statement. id fixes the table ID (replay);
// log says whether to write it to the write-ahead log. It returns nil
// without error for no-ops (IF [NOT] EXISTS).
func (d *db) applyDDL(st statement, sessKS string, id *uuid.UUID, log bool) (*schemaChange, error) {
	d.mu.Lock()
	ch, logged, err := d.applyDDLLocked(st, sessKS, id)
	if err == nil && ch != nil {
		d.schemaVersion = uuid.New()
		if log && d.wal != nil && logged != "" {
			d.wal.appendSchema(logged)
		}
	}
	d.mu.Unlock()
	if err == nil && ch != nil && d.onSchemaChange != nil {
		d.onSchemaChange(*ch)
	}
	return ch, err
}

// applyDDLLocked does the work of applyDDL under d.mu and returns the
// statement to log (a canonical form carrying table IDs).
func (d *db) applyDDLLocked(st statement, sessKS string, id *uuid.UUID) (*schemaChange, string, error) {
	switch s := st.(type) {
	case *createKeyspaceStmt:
		if !nameRE.MatchString(s.name) {
			return nil, "", errInvalid("Keyspace name must not be empty, more than 48 characters long, or contain non-alphanumeric-underscore characters (got \"%s\")", s.name)
		}
		repl, durable, err := replicationFromProps(s.props)
		if err != nil {
			return nil, "", err
		}
		if _, exists := d.keyspaces[s.name]; exists {
			if s.ifNotExists {
				return nil, "", nil
			}
			return nil, "", errAlreadyExists(s.name, "", fmt.Sprintf("Cannot add existing keyspace \"%s\"", s.name))
		}
		ks := &keyspace{name: s.name, replication: repl, durableWrites: durable, tables: map[string]*table{}}
		d.keyspaces[s.name] = ks
		return &schemaChange{change: primitive.SchemaChangeTypeCreated, target: primitive.SchemaChangeTargetKeyspace, keyspace: s.name}, ks.cql(), nil

	case *alterKeyspaceStmt:
		ks := d.keyspaces[s.name]
		if ks == nil {
			return nil, "", errInvalid("Keyspace '%s' doesn't exist", s.name)
		}
		if ks.virtual {
			return nil, "", errInvalid("Cannot alter system keyspace %s", s.name)
		}
		repl, durable, err := replicationFromProps(s.props)
		if err != nil {
			return nil, "", err
		}
		nks := *ks
		nks.replication, nks.durableWrites = repl, durable
		d.keyspaces[s.name] = &nks
		return &schemaChange{change: primitive.SchemaChangeTypeUpdated, target: primitive.SchemaChangeTargetKeyspace, keyspace: s.name},
			fmt.Sprintf("ALTER KEYSPACE %s WITH replication = %s AND durable_writes = %t", quoteIdent(s.name), mapLiteral(repl), durable), nil

	case *dropKeyspaceStmt:
		ks := d.keyspaces[s.name]
		if ks == nil {
			if s.ifExists {
				return nil, "", nil
			}
			return nil, "", errInvalid("Keyspace '%s' doesn't exist", s.name)
		}
		if ks.virtual {
			return nil, "", errInvalid("Cannot drop system keyspace %s", s.name)
		}
		for _, t := range ks.tables {
			t.stale.Store(true)
			delete(d.tablesByID, t.id)
		}
		delete(d.keyspaces, s.name)
		return &schemaChange{change: primitive.SchemaChangeTypeDropped, target: primitive.SchemaChangeTargetKeyspace, keyspace: s.name},
			"DROP KEYSPACE " + quoteIdent(s.name), nil

	case *createTableStmt:
		ksName, err := keyspaceName(s.table, sessKS)
		if err != nil {
			return nil, "", err
		}
		ks := d.keyspaces[ksName]
		if ks == nil {
			return nil, "", errInvalid("Keyspace '%s' doesn't exist", ksName)
		}
		if ks.virtual {
			return nil, "", errInvalid("Cannot add a table to system keyspace %s", ksName)
		}
		tid := uuid.New()
		if id != nil {
			tid = *id
		}
		t, err := buildTable(ksName, s, tid)
		if err != nil {
			return nil, "", err
		}
		if _, exists := ks.tables[s.table.name]; exists {
			if s.ifNotExists {
				return nil, "", nil
			}
			return nil, "", errAlreadyExists(ksName, s.table.name, fmt.Sprintf("Cannot add already existing table \"%s\" to keyspace \"%s\"", s.table.name, ksName))
		}
		ks.tables[t.name] = t
		d.tablesByID[t.id] = t
		return &schemaChange{change: primitive.SchemaChangeTypeCreated, target: primitive.SchemaChangeTargetTable, keyspace: ksName, object: t.name},
			"TABLE " + t.id.String() + " " + t.cql(), nil

	case *alterTableStmt:
		ksName, err := keyspaceName(s.table, sessKS)
		if err != nil {
			return nil, "", err
		}
		ks := d.keyspaces[ksName]
		if ks == nil {
			return nil, "", errInvalid("Keyspace '%s' doesn't exist", ksName)
		}
		t := ks.tables[s.table.name]
		if t == nil {
			return nil, "", errInvalid("Table '%s.%s' doesn't exist", ksName, s.table.name)
		}
		if t.virtual != nil {
			return nil, "", errInvalid("Cannot alter system table %s.%s", ksName, t.name)
		}
		var nt *table
		switch {
		case len(s.add) > 0:
			nt, err = t.withAddedColumns(s.add)
		case len(s.drop) > 0:
			return nil, "", errInvalid("ALTER TABLE DROP is not supported by this server")
		default:
			cp := *t
			cp.stale = new(atomic.Bool)
			err = applyTableProps(&cp.opts, s.props)
			if err == nil && cp.counter && cp.opts.defaultTTL > 0 {
				err = errInvalid("Cannot set default_time_to_live on a table with counters")
			}
			nt = &cp
		}
		if err != nil {
			return nil, "", err
		}
		t.stale.Store(true)
		ks.tables[nt.name] = nt
		d.tablesByID[nt.id] = nt
		return &schemaChange{change: primitive.SchemaChangeTypeUpdated, target: primitive.SchemaChangeTargetTable, keyspace: ksName, object: nt.name},
			"TABLE " + nt.id.String() + " " + nt.cql(), nil

	case *dropTableStmt:
		ksName, err := keyspaceName(s.table, sessKS)
		if err != nil {
			return nil, "", err
		}
		ks := d.keyspaces[ksName]
		if ks == nil {
			if s.ifExists {
				return nil, "", nil
			}
			return nil, "", errInvalid("Keyspace '%s' doesn't exist", ksName)
		}
		t := ks.tables[s.table.name]
		if t == nil {
			if s.ifExists {
				return nil, "", nil
			}
			return nil, "", errInvalid("Table '%s.%s' doesn't exist", ksName, s.table.name)
		}
		if t.virtual != nil {
			return nil, "", errInvalid("Cannot drop system table %s.%s", ksName, t.name)
		}
		t.stale.Store(true)
		delete(ks.tables, t.name)
		delete(d.tablesByID, t.id)
		return &schemaChange{change: primitive.SchemaChangeTypeDropped, target: primitive.SchemaChangeTargetTable, keyspace: ksName, object: t.name},
			"DROP TABLE " + quoteIdent(ksName) + "." + quoteIdent(t.name), nil
	}
	return nil, "", errInvalid("unsupported statement %s", st.statementKind())
}

// replaceTable installs a table version during replay (a "TABLE id cql"
// record): created if absent, replaced (keeping its data) if present.
func (d *db) replaceTable(id uuid.UUID, s *createTableStmt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ks := d.keyspaces[s.table.keyspace]
	if ks == nil {
		return fmt.Errorf("keyspace %s of table %s does not exist", s.table.keyspace, s.table.name)
	}
	nt, err := buildTable(s.table.keyspace, s, id)
	if err != nil {
		return err
	}
	if old := d.tablesByID[id]; old != nil {
		nt.store = old.store
		old.stale.Store(true)
	}
	ks.tables[nt.name] = nt
	d.tablesByID[id] = nt
	d.schemaVersion = uuid.New()
	return nil
}

// userTables lists the user tables, sorted by keyspace and name.
func (d *db) userTables() []*table {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []*table
	for _, ks := range d.keyspaces {
		if ks.virtual {
			continue
		}
		for _, t := range ks.tables {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].keyspace != out[j].keyspace {
			return out[i].keyspace < out[j].keyspace
		}
		return out[i].name < out[j].name
	})
	return out
}

// userKeyspaces lists user keyspaces sorted by name.
func (d *db) userKeyspaces() []*keyspace {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []*keyspace
	for _, ks := range d.keyspaces {
		if !ks.virtual {
			out = append(out, ks)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
