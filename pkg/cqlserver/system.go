package cqlserver

import (
	"fmt"
	"math"
	"net"
	"sort"

	"github.com/google/uuid"
)

// The system and system_schema keyspaces are virtual: their rows are
// generated from the node description and the schema catalog at query time
// and queried with the ordinary SELECT engine, so drivers can filter them
// like any table (gocql reads system_schema.columns WHERE keyspace_name = ?).

// virtualTable generates the rows of a system table.
type virtualTable func(d *db, sess *session) []map[string][]byte

// releaseVersion is the Cassandra version the server claims to be; drivers
// pick their system-table queries by it.
const releaseVersion = "4.1.0"

var systemTables = []struct {
	ddl string
	gen virtualTable
}{
	{`CREATE TABLE system.local (key text PRIMARY KEY, bootstrapped text, broadcast_address inet, broadcast_port int,
		cluster_name text, cql_version text, data_center text, gossip_generation int, host_id uuid, listen_address inet,
		listen_port int, native_port int, native_protocol_version text, partitioner text, rack text, release_version text,
		rpc_address inet, rpc_port int, schema_version uuid, tokens set<text>, truncated_at map<uuid, blob>)`, genLocal},
	{`CREATE TABLE system.peers (peer inet PRIMARY KEY, data_center text, host_id uuid, preferred_ip inet, rack text,
		release_version text, rpc_address inet, schema_version uuid, tokens set<text>)`, genNone},
	{`CREATE TABLE system.peers_v2 (peer inet, peer_port int, data_center text, host_id uuid, native_address inet,
		native_port int, preferred_ip inet, preferred_port int, rack text, release_version text, schema_version uuid,
		tokens set<text>, PRIMARY KEY ((peer), peer_port))`, genNone},
	{`CREATE TABLE system_schema.keyspaces (keyspace_name text PRIMARY KEY, durable_writes boolean,
		replication frozen<map<text, text>>)`, genKeyspaces},
	{`CREATE TABLE system_schema.tables (keyspace_name text, table_name text, bloom_filter_fp_chance double,
		caching frozen<map<text, text>>, cdc boolean, comment text, compaction frozen<map<text, text>>,
		compression frozen<map<text, text>>, crc_check_chance double, dclocal_read_repair_chance double,
		default_time_to_live int, extensions frozen<map<text, blob>>, flags frozen<set<text>>, gc_grace_seconds int,
		id uuid, max_index_interval int, memtable_flush_period_in_ms int, min_index_interval int,
		read_repair_chance double, speculative_retry text, PRIMARY KEY ((keyspace_name), table_name))`, genTables},
	{`CREATE TABLE system_schema.columns (keyspace_name text, table_name text, column_name text, clustering_order text,
		column_name_bytes blob, kind text, position int, type text,
		PRIMARY KEY ((keyspace_name), table_name, column_name))`, genColumns},
	{`CREATE TABLE system_schema.types (keyspace_name text, type_name text, field_names frozen<list<text>>,
		field_types frozen<list<text>>, PRIMARY KEY ((keyspace_name), type_name))`, genNone},
	{`CREATE TABLE system_schema.functions (keyspace_name text, function_name text, argument_types frozen<list<text>>,
		argument_names frozen<list<text>>, body text, called_on_null_input boolean, language text, return_type text,
		PRIMARY KEY ((keyspace_name), function_name, argument_types))`, genNone},
	{`CREATE TABLE system_schema.aggregates (keyspace_name text, aggregate_name text, argument_types frozen<list<text>>,
		final_func text, initcond text, return_type text, state_func text, state_type text,
		PRIMARY KEY ((keyspace_name), aggregate_name, argument_types))`, genNone},
	{`CREATE TABLE system_schema.indexes (keyspace_name text, table_name text, index_name text, kind text,
		options frozen<map<text, text>>, PRIMARY KEY ((keyspace_name), table_name, index_name))`, genNone},
	{`CREATE TABLE system_schema.triggers (keyspace_name text, table_name text, trigger_name text,
		options frozen<map<text, text>>, PRIMARY KEY ((keyspace_name), table_name, trigger_name))`, genNone},
	{`CREATE TABLE system_schema.dropped_columns (keyspace_name text, table_name text, column_name text,
		dropped_time timestamp, kind text, type text, PRIMARY KEY ((keyspace_name), table_name, column_name))`, genNone},
	// gocql v1.7.0 selects the Cassandra 3 columns of views (including
	// the read_repair_chance ones Cassandra 4 removed); they are all here
	// so its KeyspaceMetadata works.
	{`CREATE TABLE system_schema.views (keyspace_name text, view_name text, base_table_id uuid, base_table_name text,
		bloom_filter_fp_chance double, caching frozen<map<text, text>>, cdc boolean, comment text,
		compaction frozen<map<text, text>>, compression frozen<map<text, text>>, crc_check_chance double,
		dclocal_read_repair_chance double, default_time_to_live int, extensions frozen<map<text, blob>>,
		gc_grace_seconds int, id uuid, include_all_columns boolean, max_index_interval int,
		memtable_flush_period_in_ms int, min_index_interval int, read_repair_chance double, speculative_retry text,
		where_clause text, PRIMARY KEY ((keyspace_name), view_name))`, genNone},
}

// installSystemKeyspaces creates the virtual keyspaces.
func (d *db) installSystemKeyspaces() {
	local := map[string]string{"class": strategyPrefix + "LocalStrategy"}
	for _, name := range []string{"system", "system_schema"} {
		d.keyspaces[name] = &keyspace{name: name, replication: local, durableWrites: true, tables: map[string]*table{}, virtual: true}
	}
	for _, st := range systemTables {
		p, err := parseCQL(st.ddl)
		if err != nil {
			panic(fmt.Sprintf("cqlserver: system table definition: %v", err))
		}
		ct := p.stmt.(*createTableStmt)
		t, err := buildTable(ct.table.keyspace, ct, uuid.NewSHA1(uuid.NameSpaceOID, []byte(ct.table.keyspace+"."+ct.table.name)))
		if err != nil {
			panic(fmt.Sprintf("cqlserver: system table definition: %v", err))
		}
		t.virtual = st.gen
		d.keyspaces[ct.table.keyspace].tables[t.name] = t
	}
}

// materialize builds a throw-away store holding a virtual table's rows.
func (d *db) materialize(t *table, sess *session) (*tableStore, error) {
	s := newTableStore(t.store.ckTypes, t.store.ckDesc)
	for _, vals := range t.virtual(d, sess) {
		pk := make([][]byte, len(t.partitionKey))
		for i, c := range t.partitionKey {
			pk[i] = vals[c.name]
		}
		ck := make([][]byte, len(t.clustering))
		for i, c := range t.clustering {
			ck[i] = vals[c.name]
		}
		key := partitionKeyBytes(pk)
		p := s.getOrCreate(key, murmur3Token(key))
		r := newRow(ck)
		r.marker = liveness{ts: 0}
		r.cells = make([]cell, t.nSlots)
		for _, c := range t.slots {
			if v, ok := vals[c.name]; ok && v != nil {
				r.cells[c.slot] = cell{ts: 0, value: v}
			} else {
				r.cells[c.slot] = emptyCell
			}
		}
		f := newFragment()
		f.rows = []*row{r}
		s.apply(p, f, 0, t.elemCompare)
	}
	return s, nil
}

func genNone(*db, *session) []map[string][]byte { return nil }

func textSet(vals []string) []byte {
	s := append([]string(nil), vals...)
	sort.Strings(s)
	elems := make([][]byte, len(s))
	for i, v := range s {
		elems[i] = []byte(v)
	}
	return joinCollection(elems)
}

func textMap(m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ks, vs := make([][]byte, len(keys)), make([][]byte, len(keys))
	for i, k := range keys {
		ks[i], vs[i] = []byte(k), []byte(m[k])
	}
	return joinMap(ks, vs)
}

func boolBytes(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

func inetBytes(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return []byte(v4)
	}
	return []byte(ip.To16())
}

func genLocal(d *db, sess *session) []map[string][]byte {
	d.mu.RLock()
	version := d.schemaVersion
	d.mu.RUnlock()
	ip, port := net.IPv4(127, 0, 0, 1), 9042
	if sess.local != nil {
		ip, port = sess.local.IP, sess.local.Port
	}
	return []map[string][]byte{{
		"key":                     []byte("local"),
		"bootstrapped":            []byte("COMPLETED"),
		"broadcast_address":       inetBytes(ip),
		"broadcast_port":          int32Bytes(7000),
		"cluster_name":            []byte(d.node.clusterName),
		"cql_version":             []byte("3.4.6"),
		"data_center":             []byte(d.node.dataCenter),
		"gossip_generation":       int32Bytes(1),
		"host_id":                 d.node.hostID[:],
		"listen_address":          inetBytes(ip),
		"listen_port":             int32Bytes(7000),
		"native_port":             int32Bytes(int32(port)),
		"native_protocol_version": []byte("4"),
		"partitioner":             []byte("org.apache.cassandra.dht.Murmur3Partitioner"),
		"rack":                    []byte(d.node.rack),
		"release_version":         []byte(releaseVersion),
		"rpc_address":             inetBytes(ip),
		"rpc_port":                int32Bytes(int32(port)),
		"schema_version":          version[:],
		"tokens":                  textSet(d.node.tokens),
	}}
}

func (d *db) allKeyspaces() []*keyspace {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]*keyspace, 0, len(d.keyspaces))
	for _, ks := range d.keyspaces {
		out = append(out, ks)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (ks *keyspace) sortedTables() []*table {
	out := make([]*table, 0, len(ks.tables))
	for _, t := range ks.tables {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func genKeyspaces(d *db, _ *session) []map[string][]byte {
	var rows []map[string][]byte
	for _, ks := range d.allKeyspaces() {
		rows = append(rows, map[string][]byte{
			"keyspace_name":  []byte(ks.name),
			"durable_writes": boolBytes(ks.durableWrites),
			"replication":    textMap(ks.replication),
		})
	}
	return rows
}

func doubleBytes(f float64) []byte {
	return int64Bytes(int64(math.Float64bits(f)))
}

func genTables(d *db, _ *session) []map[string][]byte {
	var rows []map[string][]byte
	for _, ks := range d.allKeyspaces() {
		d.mu.RLock()
		tables := ks.sortedTables()
		d.mu.RUnlock()
		for _, t := range tables {
			compaction := t.opts.compaction
			if compaction == nil {
				compaction = map[string]string{"class": "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy", "max_threshold": "32", "min_threshold": "4"}
			}
			compression := t.opts.compression
			if compression == nil {
				compression = map[string]string{"chunk_length_in_kb": "16", "class": "org.apache.cassandra.io.compress.LZ4Compressor"}
			}
			caching := t.opts.caching
			if caching == nil {
				caching = map[string]string{"keys": "ALL", "rows_per_partition": "NONE"}
			}
			flags := []string{"compound"}
			if t.counter {
				flags = append(flags, "counter")
			}
			rows = append(rows, map[string][]byte{
				"keyspace_name":               []byte(ks.name),
				"table_name":                  []byte(t.name),
				"bloom_filter_fp_chance":      doubleBytes(0.01),
				"caching":                     textMap(caching),
				"cdc":                         boolBytes(false),
				"comment":                     []byte(t.opts.comment),
				"compaction":                  textMap(compaction),
				"compression":                 textMap(compression),
				"crc_check_chance":            doubleBytes(1),
				"dclocal_read_repair_chance":  doubleBytes(0),
				"default_time_to_live":        int32Bytes(t.opts.defaultTTL),
				"extensions":                  joinMap(nil, nil),
				"flags":                       textSet(flags),
				"gc_grace_seconds":            int32Bytes(t.opts.gcGrace),
				"id":                          t.id[:],
				"max_index_interval":          int32Bytes(2048),
				"memtable_flush_period_in_ms": int32Bytes(0),
				"min_index_interval":          int32Bytes(128),
				"read_repair_chance":          doubleBytes(0),
				"speculative_retry":           []byte("99p"),
			})
		}
	}
	return rows
}

func genColumns(d *db, _ *session) []map[string][]byte {
	var rows []map[string][]byte
	for _, ks := range d.allKeyspaces() {
		d.mu.RLock()
		tables := ks.sortedTables()
		d.mu.RUnlock()
		for _, t := range tables {
			for _, c := range t.allColumns() {
				order := "none"
				if c.kind == colClustering {
					order = "asc"
					if c.desc {
						order = "desc"
					}
				}
				rows = append(rows, map[string][]byte{
					"keyspace_name":     []byte(ks.name),
					"table_name":        []byte(t.name),
					"column_name":       []byte(c.name),
					"clustering_order":  []byte(order),
					"column_name_bytes": []byte(c.name),
					"kind":              []byte(c.kind.String()),
					"position":          int32Bytes(int32(c.position)),
					"type":              []byte(c.typ.String()),
				})
			}
		}
	}
	return rows
}
