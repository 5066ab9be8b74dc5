package cqlserver

// This file holds the syntax tree produced by the parser. Names of
// keyspaces, tables and columns are already case-folded: unquoted
// identifiers are lower case, quoted ones keep their case.

// statement is a parsed CQL statement.
type statement interface{ statementKind() string }

// tableRef names a table, optionally qualified by its keyspace.
type tableRef struct {
	keyspace string // empty: the connection's current keyspace
	name     string
}

// term is a value expression: a literal, a bind marker, a collection or
// tuple literal, or a function call.
type term interface{ isTerm() }

type litKind uint8

const (
	litString litKind = iota
	litInteger
	litFloat
	litBool
	litUUID
	litHex
	litNull
)

func (k litKind) String() string {
	switch k {
	case litString:
		return "STRING"
	case litInteger:
		return "INTEGER"
	case litFloat:
		return "FLOAT"
	case litBool:
		return "BOOLEAN"
	case litUUID:
		return "UUID"
	case litHex:
		return "HEX"
	}
	return "NULL"
}

// literal is a constant as written in the statement.
type literal struct {
	kind litKind
	text string // string contents, number or identifier text
}

// bindMarker is a ? or :name marker; index is its position among the
// statement's markers.
type bindMarker struct {
	index int
	name  string // empty for ?
}

type collKind uint8

const (
	collList collKind = iota
	collSet
	collMap
	collEmptyBraces // {} is an empty set or map depending on the receiver
)

// collectionLiteral is [..], {..} or {k: v, ..}.
type collectionLiteral struct {
	kind   collKind
	elems  []term // list/set elements, map keys
	values []term // map values
}

// tupleLiteral is (a, b, ...) as used in multi-column relations.
type tupleLiteral struct{ elems []term }

// functionCall is a function applied to terms, e.g. now() or
// toTimestamp(now()).
type functionCall struct {
	name string
	args []term
}

func (*literal) isTerm()           {}
func (*bindMarker) isTerm()        {}
func (*collectionLiteral) isTerm() {}
func (*tupleLiteral) isTerm()      {}
func (*functionCall) isTerm()      {}

// selector is one entry of a SELECT clause.
type selector struct {
	expr  selectorExpr
	alias string
}

// selectorExpr is a column, a function call over selectors, or a literal
// argument such as the 1 of count(1).
type selectorExpr interface{ isSelector() }

type selColumn struct{ name string }

type selCall struct {
	name string // lower case
	args []selectorExpr
	star bool // count(*)
}

type selTerm struct{ t term }

func (*selColumn) isSelector() {}
func (*selCall) isSelector()   {}
func (*selTerm) isSelector()   {}

// Relation operators.
const (
	opEQ          = "="
	opLT          = "<"
	opLE          = "<="
	opGT          = ">"
	opGE          = ">="
	opNE          = "!="
	opIN          = "IN"
	opContains    = "CONTAINS"
	opContainsKey = "CONTAINS KEY"
)

type lhsKind uint8

const (
	lhsColumn lhsKind = iota // a single column
	lhsToken                 // token(a, b)
	lhsTuple                 // (a, b)
)

// relation is one predicate of a WHERE clause.
type relation struct {
	lhs     lhsKind
	columns []string
	op      string
	value   term   // right-hand side, or the marker of IN ?
	in      []term // IN (...) list
	pos     token
}

// condition is one predicate of an IF clause of a conditional update.
type condition struct {
	column string
	elem   term // col[elem] conditions; nil otherwise
	op     string
	value  term
	in     []term
}

type assignOp uint8

const (
	assignSet        assignOp = iota // c = v
	assignAdd                        // c = c + v, c += v
	assignSub                        // c = c - v, c -= v
	assignPrepend                    // c = v + c
	assignSetElement                 // c[k] = v
)

// assignment is one entry of UPDATE ... SET.
type assignment struct {
	column string
	op     assignOp
	key    term
	value  term
}

// usingClause holds USING TTL / TIMESTAMP; nil terms were not given.
type usingClause struct {
	ttl       term
	timestamp term
}

type selectStmt struct {
	table             tableRef
	distinct          bool
	selectors         []selector // nil for *
	where             []relation
	orderBy           []ordering
	perPartitionLimit term
	limit             term
	allowFiltering    bool
}

type ordering struct {
	column string
	desc   bool
}

type insertStmt struct {
	table       tableRef
	columns     []string
	values      []term
	ifNotExists bool
	using       usingClause
}

type updateStmt struct {
	table       tableRef
	using       usingClause
	assignments []assignment
	where       []relation
	ifExists    bool
	conditions  []condition
}

// deleteTarget is a column (or collection element) to delete.
type deleteTarget struct {
	column string
	elem   term
}

type deleteStmt struct {
	table      tableRef
	targets    []deleteTarget // empty: the whole row(s)
	using      usingClause
	where      []relation
	ifExists   bool
	conditions []condition
}

type batchKind uint8

const (
	batchLogged batchKind = iota
	batchUnlogged
	batchCounter
)

type batchStmt struct {
	kind       batchKind
	using      usingClause
	statements []statement // insert, update or delete
}

// property is one "name = value" of a WITH clause.
type property struct {
	name  string
	value term // literal or map literal
}

type createKeyspaceStmt struct {
	name        string
	ifNotExists bool
	props       []property
}

type alterKeyspaceStmt struct {
	name  string
	props []property
}

type dropKeyspaceStmt struct {
	name     string
	ifExists bool
}

type columnDef struct {
	name   string
	typ    *cqlType
	static bool
}

type createTableStmt struct {
	table           tableRef
	ifNotExists     bool
	columns         []columnDef
	partitionKey    []string
	clustering      []string
	clusteringOrder []ordering
	props           []property
	compactStorage  bool
}

type alterTableStmt struct {
	table tableRef
	add   []columnDef
	drop  []string
	props []property
}

type dropTableStmt struct {
	table    tableRef
	ifExists bool
}

type truncateStmt struct{ table tableRef }

type useStmt struct{ keyspace string }

// unsupportedStmt is a statement the parser recognises but the server does
// not implement (secondary indexes, user types, roles...).
type unsupportedStmt struct{ what string }

func (*selectStmt) statementKind() string         { return "SELECT" }
func (*insertStmt) statementKind() string         { return "INSERT" }
func (*updateStmt) statementKind() string         { return "UPDATE" }
func (*deleteStmt) statementKind() string         { return "DELETE" }
func (*batchStmt) statementKind() string          { return "BATCH" }
func (*createKeyspaceStmt) statementKind() string { return "CREATE KEYSPACE" }
func (*alterKeyspaceStmt) statementKind() string  { return "ALTER KEYSPACE" }
func (*dropKeyspaceStmt) statementKind() string   { return "DROP KEYSPACE" }
func (*createTableStmt) statementKind() string    { return "CREATE TABLE" }
func (*alterTableStmt) statementKind() string     { return "ALTER TABLE" }
func (*dropTableStmt) statementKind() string      { return "DROP TABLE" }
func (*truncateStmt) statementKind() string       { return "TRUNCATE" }
func (*useStmt) statementKind() string            { return "USE" }
func (s *unsupportedStmt) statementKind() string  { return s.what }
