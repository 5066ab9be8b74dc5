package cqlserver

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/datastax/go-cassandra-native-protocol/primitive"
	"github.com/google/uuid"
)

type columnKind uint8

const (
	colPartitionKey columnKind = iota
	colClustering
	colRegular
)

func (k columnKind) String() string {
	switch k {
	case colPartitionKey:
		return "partition_key"
	case colClustering:
		return "clustering"
	}
	return "regular"
}

// column is a column of a table. Key columns have a component position;
// regular columns a slot in the row's cell array that never changes for
// the life of the table (ALTER TABLE ADD appends slots).
type column struct {
	name     string
	typ      *cqlType
	kind     columnKind
	position int
	slot     int
	desc     bool // clustering columns: CLUSTERING ORDER DESC
}

// table is an immutable schema version of a table. ALTER TABLE replaces it
// with a new version sharing the same data store; the old version is marked
// stale so that statements compiled against it are rebuilt.
type table struct {
	id           uuid.UUID
	keyspace     string
	name         string
	partitionKey []*column
	clustering   []*column
	regular      []*column // sorted by name, as SELECT * lists them
	byName       map[string]*column
	nSlots       int
	slots        []*column // regular columns by slot
	counter      bool
	opts         tableOptions
	store        *tableStore
	virtual      virtualTable // nil for user tables
	stale        *atomic.Bool // shared by nobody: each version has its own
}

// tableOptions are the table properties the server uses or reports; other
// known properties are accepted and ignored.
type tableOptions struct {
	defaultTTL  int32
	gcGrace     int32
	comment     string
	compaction  map[string]string
	compression map[string]string
	caching     map[string]string
}

// allColumns lists the columns in SELECT * order.
func (t *table) allColumns() []*column {
	out := make([]*column, 0, len(t.partitionKey)+len(t.clustering)+len(t.regular))
	out = append(out, t.partitionKey...)
	out = append(out, t.clustering...)
	return append(out, t.regular...)
}

// keyspace is a keyspace and its tables.
type keyspace struct {
	name          string
	replication   map[string]string // with the full strategy class name
	durableWrites bool
	tables        map[string]*table
	virtual       bool
}

var nameRE = regexp.MustCompile(`^\w{1,48}$`)

const strategyPrefix = "org.apache.cassandra.locator."

// replicationFromProps validates replication options like Cassandra's
// KeyspaceParams and returns them with the strategy class fully qualified.
func replicationFromProps(props []property) (repl map[string]string, durable bool, err error) {
	durable = true
	for _, p := range props {
		switch p.name {
		case "replication":
			m, err := propertyMap(p)
			if err != nil {
				return nil, false, err
			}
			repl = m
		case "durable_writes":
			b, err := propertyBool(p)
			if err != nil {
				return nil, false, err
			}
			durable = b
		default:
			return nil, false, errSyntax(fmt.Sprintf("Unknown property '%s'", p.name))
		}
	}
	if repl == nil {
		return nil, false, errConfig("Missing mandatory option 'replication'")
	}
	class, ok := repl["class"]
	if !ok {
		return nil, false, errConfig("Missing replication strategy class")
	}
	short := strings.TrimPrefix(class, strategyPrefix)
	switch short {
	case "SimpleStrategy":
		rf, ok := repl["replication_factor"]
		if !ok {
			return nil, false, errConfig("SimpleStrategy requires a replication_factor strategy option.")
		}
		if n, err := strconv.Atoi(rf); err != nil || n < 0 {
			return nil, false, errConfig("Replication factor must be non-negative integer; found %s", rf)
		}
		for k := range repl {
			if k != "class" && k != "replication_factor" {
				return nil, false, errConfig("Unrecognized strategy option {%s} passed to SimpleStrategy for keyspace", k)
			}
		}
	case "NetworkTopologyStrategy":
		for k, v := range repl {
			if k == "class" {
				continue
			}
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return nil, false, errConfig("Replication factor must be non-negative integer; found %s", v)
			}
		}
	case "LocalStrategy", "EverywhereStrategy":
	default:
		return nil, false, errConfig("Unable to find replication strategy class '%s'", class)
	}
	out := make(map[string]string, len(repl))
	for k, v := range repl {
		out[k] = v
	}
	out["class"] = strategyPrefix + short
	return out, durable, nil
}

func propertyMap(p property) (map[string]string, error) {
	cl, ok := p.value.(*collectionLiteral)
	if !ok || (cl.kind != collMap && cl.kind != collEmptyBraces) {
		return nil, errSyntax(fmt.Sprintf("Invalid value for property '%s'. It should be a map.", p.name))
	}
	m := make(map[string]string, len(cl.elems))
	for i := range cl.elems {
		k, ok1 := cl.elems[i].(*literal)
		v, ok2 := cl.values[i].(*literal)
		if !ok1 || !ok2 {
			return nil, errSyntax(fmt.Sprintf("Invalid value for property '%s'", p.name))
		}
		m[k.text] = v.text
	}
	return m, nil
}

func propertyBool(p property) (bool, error) {
	l, ok := p.value.(*literal)
	if ok {
		switch strings.ToLower(l.text) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, errSyntax(fmt.Sprintf("Invalid boolean value for property '%s'", p.name))
}

func propertyInt(p property) (int32, error) {
	l, ok := p.value.(*literal)
	if ok {
		if n, err := strconv.ParseInt(l.text, 10, 32); err == nil {
			return int32(n), nil
		}
	}
	return 0, errSyntax(fmt.Sprintf("Invalid integer value for property '%s'", p.name))
}

// knownTableProperties are accepted in CREATE/ALTER TABLE ... WITH.
var knownTableProperties = map[string]bool{
	"bloom_filter_fp_chance": true, "caching": true, "comment": true, "compaction": true,
	"compression": true, "crc_check_chance": true, "dclocal_read_repair_chance": true,
	"default_time_to_live": true, "gc_grace_seconds": true, "max_index_interval": true,
	"memtable_flush_period_in_ms": true, "min_index_interval": true, "read_repair_chance": true,
	"speculative_retry": true, "cdc": true, "additional_write_policy": true, "read_repair": true,
	"extensions": true, "memtable": true, "id": true, "populate_io_cache_on_flush": true,
}

func applyTableProps(opts *tableOptions, props []property) error {
	for _, p := range props {
		if !knownTableProperties[p.name] {
			return errSyntax(fmt.Sprintf("Unknown property '%s'", p.name))
		}
		var err error
		switch p.name {
		case "default_time_to_live":
			opts.defaultTTL, err = propertyInt(p)
			if err == nil && (opts.defaultTTL < 0 || opts.defaultTTL > maxTTL) {
				err = errConfig("default_time_to_live must be greater than or equal to 0 (got %d)", opts.defaultTTL)
			}
		case "gc_grace_seconds":
			opts.gcGrace, err = propertyInt(p)
		case "comment":
			if l, ok := p.value.(*literal); ok {
				opts.comment = l.text
			}
		case "compaction":
			opts.compaction, err = propertyMap(p)
		case "compression":
			opts.compression, err = propertyMap(p)
		case "caching":
			opts.caching, err = propertyMap(p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// maxTTL is Cassandra's maximum TTL (20 years).
const maxTTL = 20 * 365 * 24 * 60 * 60

// buildTable validates a CREATE TABLE statement and builds the table.
func buildTable(ks string, s *createTableStmt, id uuid.UUID) (*table, error) {
	if !nameRE.MatchString(s.table.name) {
		return nil, errInvalid("Table name must not be empty, more than 48 characters long, or contain non-alphanumeric-underscore characters (got \"%s\")", s.table.name)
	}
	t := &table{id: id, keyspace: ks, name: s.table.name, byName: map[string]*column{}, stale: new(atomic.Bool)}
	t.opts = tableOptions{gcGrace: 864000}
	if err := applyTableProps(&t.opts, s.props); err != nil {
		return nil, err
	}
	if s.compactStorage {
		return nil, errInvalid("COMPACT STORAGE tables are not supported")
	}
	if len(s.partitionKey) == 0 {
		return nil, errInvalid("No PRIMARY KEY specifed for table '%s' (exactly one required)", s.table.name)
	}
	defs := map[string]columnDef{}
	for _, cd := range s.columns {
		if _, dup := defs[cd.name]; dup {
			return nil, errInvalid("Duplicate column '%s' declaration for table '%s.%s'", cd.name, ks, s.table.name)
		}
		if cd.static {
			return nil, errInvalid("Static columns are not supported by this server (column '%s')", cd.name)
		}
		defs[cd.name] = cd
	}
	used := map[string]bool{}
	keyCol := func(name string, kind columnKind, pos int) (*column, error) {
		cd, ok := defs[name]
		if !ok {
			return nil, errInvalid("Unknown definition %s referenced in PRIMARY KEY", name)
		}
		if used[name] {
			return nil, errInvalid("Duplicate definition %s in PRIMARY KEY", name)
		}
		used[name] = true
		if cd.typ.kind == kindCounter {
			return nil, errInvalid("counter type is not supported for PRIMARY KEY column '%s'", name)
		}
		if cd.typ.isMultiCell() {
			return nil, errInvalid("Invalid non-frozen collection type %s for PRIMARY KEY column '%s'", cd.typ, name)
		}
		return &column{name: name, typ: cd.typ, kind: kind, position: pos, slot: -1}, nil
	}
	for i, n := range s.partitionKey {
		c, err := keyCol(n, colPartitionKey, i)
		if err != nil {
			return nil, err
		}
		t.partitionKey = append(t.partitionKey, c)
	}
	for i, n := range s.clustering {
		c, err := keyCol(n, colClustering, i)
		if err != nil {
			return nil, err
		}
		t.clustering = append(t.clustering, c)
	}
	if len(s.clusteringOrder) > 0 {
		for i, o := range s.clusteringOrder {
			if _, ok := defs[o.column]; !ok {
				return nil, errInvalid("Unknown column %s in CLUSTERING ORDER directive", o.column)
			}
			if i >= len(t.clustering) || t.clustering[i].name != o.column {
				found := false
				for _, c := range t.clustering {
					found = found || c.name == o.column
				}
				if !found {
					return nil, errInvalid("Only clustering key columns can be defined in CLUSTERING ORDER directive: %s is not a clustering column", o.column)
				}
				return nil, errInvalid("The order of columns in the CLUSTERING ORDER directive must match that of the clustering columns (%s must appear before %s)", t.clustering[i].name, o.column)
			}
			t.clustering[i].desc = o.desc
		}
	}
	var regular []*column
	hasCounter, hasOther := false, false
	for _, cd := range s.columns {
		if used[cd.name] {
			continue
		}
		if cd.typ.kind == kindCounter {
			hasCounter = true
		} else {
			hasOther = true
		}
		regular = append(regular, &column{name: cd.name, typ: cd.typ, kind: colRegular, position: -1, slot: len(regular)})
	}
	if hasCounter && hasOther {
		return nil, errInvalid("Cannot mix counter and non counter columns in the same table")
	}
	t.counter = hasCounter
	if t.counter && t.opts.defaultTTL > 0 {
		return nil, errInvalid("Cannot set default_time_to_live on a table with counters")
	}
	t.nSlots = len(regular)
	t.slots = append([]*column(nil), regular...)
	sort.Slice(regular, func(i, j int) bool { return regular[i].name < regular[j].name })
	t.regular = regular
	for _, c := range t.allColumns() {
		t.byName[c.name] = c
	}
	ckTypes := make([]*cqlType, len(t.clustering))
	ckDesc := make([]bool, len(t.clustering))
	for i, c := range t.clustering {
		ckTypes[i], ckDesc[i] = c.typ, c.desc
	}
	t.store = newTableStore(ckTypes, ckDesc)
	return t, nil
}

// withAddedColumns returns a new version of t with extra regular columns.
func (t *table) withAddedColumns(defs []columnDef) (*table, error) {
	nt := *t
	nt.stale = new(atomic.Bool)
	nt.byName = make(map[string]*column, len(t.byName)+len(defs))
	for k, v := range t.byName {
		nt.byName[k] = v
	}
	nt.regular = append([]*column(nil), t.regular...)
	nt.slots = append([]*column(nil), t.slots...)
	for _, cd := range defs {
		if _, exists := nt.byName[cd.name]; exists {
			return nil, errInvalid("Column with name '%s' already exists", cd.name)
		}
		if cd.static {
			return nil, errInvalid("Static columns are not supported by this server (column '%s')", cd.name)
		}
		if (cd.typ.kind == kindCounter) != t.counter {
			if t.counter {
				return nil, errInvalid("Cannot add a non counter column (%s) in a counter table", cd.name)
			}
			return nil, errInvalid("Cannot add a counter column (%s) in a non counter table", cd.name)
		}
		c := &column{name: cd.name, typ: cd.typ, kind: colRegular, position: -1, slot: nt.nSlots}
		nt.nSlots++
		nt.regular = append(nt.regular, c)
		nt.slots = append(nt.slots, c)
		nt.byName[c.name] = c
	}
	sort.Slice(nt.regular, func(i, j int) bool { return nt.regular[i].name < nt.regular[j].name })
	return &nt, nil
}

// cql renders the table as a CREATE TABLE statement (used by the
// write-ahead log and snapshots to persist the schema). Columns are written
// in slot order so that replay assigns the same slots.
func (t *table) cql() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE %s.%s (", quoteIdent(t.keyspace), quoteIdent(t.name))
	for _, c := range t.partitionKey {
		fmt.Fprintf(&b, "%s %s, ", quoteIdent(c.name), c.typ)
	}
	for _, c := range t.clustering {
		fmt.Fprintf(&b, "%s %s, ", quoteIdent(c.name), c.typ)
	}
	for _, c := range t.slotOrder() {
		fmt.Fprintf(&b, "%s %s, ", quoteIdent(c.name), c.typ)
	}
	b.WriteString("PRIMARY KEY ((")
	for i, c := range t.partitionKey {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c.name))
	}
	b.WriteString(")")
	for _, c := range t.clustering {
		b.WriteString(", " + quoteIdent(c.name))
	}
	b.WriteString("))")
	var with []string
	if len(t.clustering) > 0 {
		var parts []string
		for _, c := range t.clustering {
			dir := "ASC"
			if c.desc {
				dir = "DESC"
			}
			parts = append(parts, quoteIdent(c.name)+" "+dir)
		}
		with = append(with, "CLUSTERING ORDER BY ("+strings.Join(parts, ", ")+")")
	}
	with = append(with, fmt.Sprintf("default_time_to_live = %d", t.opts.defaultTTL))
	with = append(with, fmt.Sprintf("gc_grace_seconds = %d", t.opts.gcGrace))
	with = append(with, "comment = "+quoteString(t.opts.comment))
	for name, m := range map[string]map[string]string{"compaction": t.opts.compaction, "compression": t.opts.compression, "caching": t.opts.caching} {
		if m != nil {
			with = append(with, name+" = "+mapLiteral(m))
		}
	}
	sort.Strings(with[1:])
	b.WriteString(" WITH " + strings.Join(with, " AND "))
	return b.String()
}

// slotOrder lists regular columns by slot.
func (t *table) slotOrder() []*column { return t.slots }

func (k *keyspace) cql() string {
	return fmt.Sprintf("CREATE KEYSPACE %s WITH replication = %s AND durable_writes = %t", quoteIdent(k.name), mapLiteral(k.replication), k.durableWrites)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func mapLiteral(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = quoteString(k) + ": " + quoteString(m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// schemaChange describes a DDL effect, returned to the client and pushed
// to connections registered for SCHEMA_CHANGE events.
type schemaChange struct {
	change   primitive.SchemaChangeType
	target   primitive.SchemaChangeTarget
	keyspace string
	object   string
}
