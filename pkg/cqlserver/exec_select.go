package cqlserver

import (
	"encoding/binary"
	"math"
	"math/big"
	"sort"

	"github.com/datastax/go-cassandra-native-protocol/message"
)

// multiValue is the right-hand side of an EQ or IN restriction: one value,
// a list of values, or a bound list (IN ?).
type multiValue struct {
	single expr
	list   []expr
	marker expr // yields a serialized list
	typ    *cqlType
}

// pkIndices returns the bind indexes of a statement's partition key
// values, by which drivers route it by token: nil unless each is a bind
// marker.
func pkIndices(pk []*multiValue) []uint16 {
	var out []uint16
	for _, mv := range pk {
		m, ok := mv.single.(*markerExpr)
		if !ok {
			return nil
		}
		out = append(out, uint16(m.index))
	}
	return out
}

// combinations extends every prefix by every value of each restriction in
// turn: the cartesian product of IN lists (an EQ is a list of one). cols
// are the restricted columns, named in errors.
func combinations(prefixes [][][]byte, restrictions []*multiValue, cols []*column, b *bindings) ([][][]byte, error) {
	for i, mv := range restrictions {
		vals, err := mv.values(b, cols[i].name)
		if err != nil {
			return nil, err
		}
		next := make([][][]byte, 0, len(prefixes)*len(vals))
		for _, pre := range prefixes {
			for _, v := range vals {
				next = append(next, append(append([][]byte(nil), pre...), v))
			}
		}
		prefixes = next
	}
	return prefixes, nil
}

func (m *multiValue) values(b *bindings, what string) ([][]byte, error) {
	if m.marker != nil {
		v, err := m.marker.eval(b)
		if err != nil {
			return nil, err
		}
		if v.unset {
			return nil, errInvalid("Invalid unset value for column %s", what)
		}
		if v.b == nil {
			return nil, errInvalid("Invalid null value for IN restriction on column %s", what)
		}
		return splitCollection(v.b)
	}
	list := m.list
	if m.single != nil {
		list = []expr{m.single} // an EQ is an IN list of one
	}
	out := make([][]byte, 0, len(list))
	for _, e := range list {
		v, err := e.eval(b)
		if err != nil {
			return nil, err
		}
		if v.unset {
			return nil, errInvalid("Invalid unset value for column %s", what)
		}
		if v.b == nil {
			return nil, errInvalid("Invalid null value in condition for column %s", what)
		}
		out = append(out, v.b)
	}
	return out, nil
}

// sliceBound is one side of a clustering slice: a single column value or a
// tuple of values for multi-column relations.
type sliceBound struct {
	values    []expr
	inclusive bool
}

// after evaluates sb under prefix: the bound, within the rows starting
// with prefix, of the slice on the columns that follow it.
func (sb *sliceBound) after(prefix [][]byte, b *bindings) (ckBound, error) {
	out := make([][]byte, len(prefix), len(prefix)+len(sb.values))
	copy(out, prefix)
	out, err := appendClusteringValues(out, sb.values, b)
	if err != nil {
		return ckBound{}, err
	}
	return ckBound{prefix: out, inclusive: sb.inclusive}, nil
}

// appendClusteringValues appends to out the values of exprs, which
// restrict clustering columns and may be neither null nor unset.
func appendClusteringValues(out [][]byte, exprs []expr, b *bindings) ([][]byte, error) {
	for _, e := range exprs {
		v, err := e.eval(b)
		if err != nil {
			return nil, err
		}
		if v.b == nil || v.unset {
			return nil, errInvalid("Invalid null value in condition for a clustering column")
		}
		out = append(out, v.b)
	}
	return out, nil
}

// filter is a predicate evaluated on each candidate row (ALLOW FILTERING).
type filter struct {
	col    *column
	op     string
	value  expr
	in     *multiValue
	elemTy *cqlType // CONTAINS / CONTAINS KEY element type
}

type outKind uint8

const (
	outColumn outKind = iota
	outWritetime
	outTTL
	outToken
	outAggregate
)

// outCol is one column of the result.
type outCol struct {
	kind      outKind
	col       *column
	agg       string // count, min, max, sum, avg
	countStar bool
	typ       *cqlType
}

// selectPlan is a compiled SELECT.
type selectPlan struct {
	table     *table
	cols      []outCol
	aggregate bool
	distinct  bool

	pk       []*multiValue // per partition key column; nil: not fully restricted
	tokenLo  *sliceBound
	tokenHi  *sliceBound
	ckEq     []*multiValue // EQ/IN per clustering column prefix
	ckTuples *multiValue   // (c1, c2) = / IN: serialized tuples as lists
	sliceLo  *sliceBound
	sliceHi  *sliceBound
	filters  []filter

	reversed      bool
	orderByMerge  bool // ORDER BY across several partitions: sort in memory
	limit         expr
	perPartLimit  expr
	hasCKRestrict bool
}

func (d *db) compileSelect(c *compiled, s *selectStmt) error {
	t, err := d.lookupTable(s.table, c.keyspace)
	if err != nil {
		return err
	}
	c.tables = []*table{t}
	p := &selectPlan{table: t, distinct: s.distinct}
	spec := func(name string, typ *cqlType) receiver {
		return receiver{name: name, typ: typ, keyspace: t.keyspace, table: t.name}
	}

	// Selection.
	var meta []*message.ColumnMetadata
	addOut := func(o outCol, name string) {
		p.cols = append(p.cols, o)
		meta = append(meta, &message.ColumnMetadata{Keyspace: t.keyspace, Table: t.name, Name: name, Index: int32(len(meta)), Type: o.typ.dataType()})
	}
	if s.selectors == nil {
		for _, col := range t.allColumns() {
			addOut(outCol{kind: outColumn, col: col, typ: col.typ}, col.name)
		}
	}
	for _, sel := range s.selectors {
		o, name, err := compileSelector(t, sel.expr)
		if err != nil {
			return err
		}
		if sel.alias != "" {
			name = sel.alias
		}
		if o.kind == outAggregate {
			p.aggregate = true
		}
		addOut(o, name)
	}
	if s.distinct {
		seen := map[string]bool{}
		for _, o := range p.cols {
			if o.kind != outColumn || o.col.kind != colPartitionKey {
				what := "?"
				if o.col != nil {
					what = o.col.name
				}
				return errInvalid("SELECT DISTINCT queries must only request partition key columns and/or static columns (not %s)", what)
			}
			seen[o.col.name] = true
		}
		for _, pkc := range t.partitionKey {
			if !seen[pkc.name] {
				return errInvalid("SELECT DISTINCT queries must request all the partition key columns (missing %s)", pkc.name)
			}
		}
	}

	// Restrictions.
	pkRestr := make([]*multiValue, len(t.partitionKey))
	pkOther := false // pk columns restricted other than by EQ/IN
	ckSingle := make([][]relation, len(t.clustering))
	var ckTuple []relation
	var filters []relation
	for _, r := range s.where {
		switch r.lhs {
		case lhsToken:
			if len(r.columns) != len(t.partitionKey) {
				return errInvalid("The token() function must be applied to all partition key components or none of them")
			}
			for i, name := range r.columns {
				if t.byName[name] == nil {
					return errInvalid("Undefined column name %s", name)
				}
				if name != t.partitionKey[i].name {
					return errInvalid("The token function arguments must be in the partition key order: %s", joinColumnNames(t.partitionKey))
				}
			}
			e, err := compileTerm(r.value, spec("partition key token", typeBigint), c.specs)
			if err != nil {
				return err
			}
			switch r.op {
			case opGT, opGE:
				if p.tokenLo != nil {
					return errInvalid("More than one restriction was found for the start bound on %s", joinColumnNames(t.partitionKey))
				}
				p.tokenLo = &sliceBound{values: []expr{e}, inclusive: r.op == opGE}
			case opLT, opLE:
				if p.tokenHi != nil {
					return errInvalid("More than one restriction was found for the end bound on %s", joinColumnNames(t.partitionKey))
				}
				p.tokenHi = &sliceBound{values: []expr{e}, inclusive: r.op == opLE}
			case opEQ:
				if p.tokenLo != nil || p.tokenHi != nil {
					return errInvalid("Columns \"%s\" cannot be restricted by both an equality and an inequality relation", joinColumnNames(t.partitionKey))
				}
				p.tokenLo = &sliceBound{values: []expr{e}, inclusive: true}
				p.tokenHi = &sliceBound{values: []expr{e}, inclusive: true}
			default:
				return errInvalid("%s cannot be used with the token function", r.op)
			}
		case lhsTuple:
			for i, name := range r.columns {
				col := t.byName[name]
				if col == nil {
					return errInvalid("Undefined column name %s", name)
				}
				if col.kind != colClustering {
					return errInvalid("Multi-column relations can only be applied to clustering columns but was applied to: %s", name)
				}
				if col.position != i {
					return errInvalid("Clustering columns must appear in the PRIMARY KEY order in multi-column relations: %s", relationString(r))
				}
			}
			ckTuple = append(ckTuple, r)
		default:
			name := r.columns[0]
			col := t.byName[name]
			if col == nil {
				return errInvalid("Undefined column name %s", name)
			}
			switch col.kind {
			case colPartitionKey:
				if r.op == opEQ || r.op == opIN {
					if pkRestr[col.position] != nil {
						return errInvalid("%s cannot be restricted by more than one relation if it includes an Equal", name)
					}
					mv, err := compileMulti(r, col, spec, c.specs)
					if err != nil {
						return err
					}
					pkRestr[col.position] = mv
				} else {
					pkOther = true
					filters = append(filters, r)
				}
			case colClustering:
				ckSingle[col.position] = append(ckSingle[col.position], r)
			default:
				filters = append(filters, r)
			}
		}
	}
	fullPK := true
	anyPK := false
	for _, mv := range pkRestr {
		if mv == nil {
			fullPK = false
		} else {
			anyPK = true
		}
	}
	if (p.tokenLo != nil || p.tokenHi != nil) && anyPK {
		return errInvalid("Columns \"%s\" cannot be restricted by both a normal relation and a token relation", joinColumnNames(t.partitionKey))
	}
	if fullPK && !pkOther {
		p.pk = pkRestr
	} else {
		if anyPK || pkOther {
			if !s.allowFiltering {
				return errInvalid(errFilteringRequired)
			}
			for i, mv := range pkRestr {
				if mv != nil {
					p.filters = append(p.filters, filter{col: t.partitionKey[i], op: opIN, in: mv})
				}
			}
		}
	}

	// Clustering restrictions: an EQ/IN prefix, then at most one slice.
	if len(ckTuple) > 0 {
		for _, rs := range ckSingle {
			if len(rs) > 0 {
				return errInvalid("Mixing single column relations and multi column relations on clustering columns is not allowed")
			}
		}
		if err := p.compileTupleRestrictions(t, ckTuple, spec, c.specs); err != nil {
			return err
		}
		p.hasCKRestrict = true
	} else {
		prefixDone := false
		var prevName string
		prevSlice := false
		for i, rs := range ckSingle {
			col := t.clustering[i]
			if len(rs) == 0 {
				prefixDone = true
				prevName = col.name
				prevSlice = false
				continue
			}
			p.hasCKRestrict = true
			if prefixDone {
				if !s.allowFiltering {
					if prevSlice {
						return errInvalid("Clustering column \"%s\" cannot be restricted (preceding column \"%s\" is restricted by a non-EQ relation)", col.name, prevName)
					}
					return errInvalid("PRIMARY KEY column \"%s\" cannot be restricted as preceding column \"%s\" is not restricted", col.name, prevName)
				}
				for _, r := range rs {
					f, err := compileFilter(t, r, spec, c.specs)
					if err != nil {
						return err
					}
					p.filters = append(p.filters, f)
				}
				continue
			}
			var eq *multiValue
			var lo, hi *sliceBound
			for _, r := range rs {
				switch r.op {
				case opEQ, opIN:
					if eq != nil || lo != nil || hi != nil {
						return errInvalid("%s cannot be restricted by more than one relation if it includes an Equal", col.name)
					}
					mv, err := compileMulti(r, col, spec, c.specs)
					if err != nil {
						return err
					}
					eq = mv
				case opGT, opGE, opLT, opLE:
					if eq != nil {
						return errInvalid("%s cannot be restricted by more than one relation if it includes an Equal", col.name)
					}
					e, err := compileTerm(r.value, spec(col.name, col.typ), c.specs)
					if err != nil {
						return err
					}
					b := &sliceBound{values: []expr{e}, inclusive: r.op == opGE || r.op == opLE}
					if r.op == opGT || r.op == opGE {
						if lo != nil {
							return errInvalid("More than one restriction was found for the start bound on %s", col.name)
						}
						lo = b
					} else {
						if hi != nil {
							return errInvalid("More than one restriction was found for the end bound on %s", col.name)
						}
						hi = b
					}
				default:
					if !s.allowFiltering {
						return errInvalid(errFilteringRequired)
					}
					f, err := compileFilter(t, r, spec, c.specs)
					if err != nil {
						return err
					}
					p.filters = append(p.filters, f)
				}
			}
			if eq != nil {
				p.ckEq = append(p.ckEq, eq)
			} else if lo != nil || hi != nil {
				p.sliceLo, p.sliceHi = lo, hi
				if col.desc {
					p.sliceLo, p.sliceHi = hi, lo
				}
				prefixDone, prevName, prevSlice = true, col.name, true
			} else {
				prefixDone, prevName, prevSlice = true, col.name, false
			}
		}
	}
	if p.hasCKRestrict && p.pk == nil && !s.allowFiltering {
		return errInvalid(errFilteringRequired)
	}
	if s.distinct && p.hasCKRestrict {
		return errInvalid("Cannot restrict clustering columns when selecting only static columns")
	}

	// Non-key filters.
	for _, r := range filters {
		if !s.allowFiltering {
			return errInvalid(errFilteringRequired)
		}
		f, err := compileFilter(t, r, spec, c.specs)
		if err != nil {
			return err
		}
		p.filters = append(p.filters, f)
	}

	// ORDER BY.
	if len(s.orderBy) > 0 {
		if p.pk == nil {
			return errInvalid("ORDER BY is only supported when the partition key is restricted by an EQ or an IN.")
		}
		reversed := false
		for i, o := range s.orderBy {
			col := t.byName[o.column]
			if col == nil {
				return errInvalid("Undefined column name %s", o.column)
			}
			if col.kind != colClustering {
				return errInvalid("Order by is currently only supported on the clustered columns of the PRIMARY KEY, got %s", o.column)
			}
			if col.position != i {
				return errInvalid("Order by currently only supports the ordering of columns following their declared order in the PRIMARY KEY")
			}
			r := o.desc != col.desc
			if i > 0 && r != reversed {
				return errInvalid("Unsupported order by relation")
			}
			reversed = r
		}
		p.reversed = reversed
		multiPartition := false
		for _, mv := range p.pk {
			if mv.single == nil {
				multiPartition = true
			}
		}
		p.orderByMerge = multiPartition
	}

	// LIMIT / PER PARTITION LIMIT.
	if s.limit != nil {
		if p.limit, err = compileTerm(s.limit, spec("[limit]", typeInt), c.specs); err != nil {
			return err
		}
	}
	if s.perPartitionLimit != nil {
		if p.perPartLimit, err = compileTerm(s.perPartitionLimit, spec("[per_partition_limit]", typeInt), c.specs); err != nil {
			return err
		}
	}

	c.pkIndices = pkIndices(p.pk)
	c.result = meta
	c.plan = p
	return nil
}

func joinColumnNames(cols []*column) string {
	s := ""
	for i, c := range cols {
		if i > 0 {
			s += ", "
		}
		s += c.name
	}
	return s
}

func relationString(r relation) string {
	s := "("
	for i, c := range r.columns {
		if i > 0 {
			s += ", "
		}
		s += c
	}
	return s + ") " + r.op + " ..."
}

// compileMulti compiles the right-hand side of an EQ or IN restriction.
func compileMulti(r relation, col *column, spec func(string, *cqlType) receiver, specs []receiver) (*multiValue, error) {
	mv := &multiValue{typ: col.typ}
	if r.op == opEQ {
		e, err := compileTerm(r.value, spec(col.name, col.typ), specs)
		if err != nil {
			return nil, err
		}
		mv.single = e
		return mv, nil
	}
	if r.value != nil {
		e, err := compileTerm(r.value, spec("in("+col.name+")", listOf(col.typ, false)), specs)
		if err != nil {
			return nil, err
		}
		mv.marker = e
		return mv, nil
	}
	mv.list = []expr{}
	for _, v := range r.in {
		e, err := compileTerm(v, spec(col.name, col.typ), specs)
		if err != nil {
			return nil, err
		}
		mv.list = append(mv.list, e)
	}
	return mv, nil
}

// compileTupleRestrictions handles (c1, c2) relations on clustering columns.
func (p *selectPlan) compileTupleRestrictions(t *table, rels []relation, spec func(string, *cqlType) receiver, specs []receiver) error {
	tupleExprs := func(r relation, v term) ([]expr, error) {
		tl, ok := v.(*tupleLiteral)
		if !ok {
			return nil, errInvalid("Multi-column relations require a tuple literal of values, e.g. (?, ?), for %s", relationString(r))
		}
		if len(tl.elems) != len(r.columns) {
			return nil, errInvalid("Expected %d elements in value tuple, but got %d: %s", len(r.columns), len(tl.elems), relationString(r))
		}
		out := make([]expr, len(tl.elems))
		for i, e := range tl.elems {
			col := t.byName[r.columns[i]]
			x, err := compileTerm(e, spec(col.name, col.typ), specs)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	}
	for _, r := range rels {
		switch r.op {
		case opEQ, opIN:
			if p.ckTuples != nil || p.sliceLo != nil || p.sliceHi != nil {
				return errInvalid("%s cannot be restricted by more than one relation if it includes an Equal", r.columns[0])
			}
			mv := &multiValue{list: []expr{}}
			vals := r.in
			if r.op == opEQ {
				vals = []term{r.value}
			} else if r.value != nil {
				return errInvalid("IN ? is not supported for multi-column relations by this server")
			}
			for _, v := range vals {
				exprs, err := tupleExprs(r, v)
				if err != nil {
					return err
				}
				mv.list = append(mv.list, &tupleExpr{elems: exprs})
			}
			p.ckTuples = mv
		case opGT, opGE, opLT, opLE:
			if p.ckTuples != nil {
				return errInvalid("%s cannot be restricted by more than one relation if it includes an Equal", r.columns[0])
			}
			desc := t.byName[r.columns[0]].desc
			for _, name := range r.columns {
				if t.byName[name].desc != desc {
					return errInvalid("Multi-column slice restrictions over clustering columns of mixed order are not supported by this server")
				}
			}
			exprs, err := tupleExprs(r, r.value)
			if err != nil {
				return err
			}
			b := &sliceBound{values: exprs, inclusive: r.op == opGE || r.op == opLE}
			isLo := r.op == opGT || r.op == opGE
			if desc {
				isLo = !isLo
			}
			if isLo {
				if p.sliceLo != nil {
					return errInvalid("More than one restriction was found for the start bound on %s", r.columns[0])
				}
				p.sliceLo = b
			} else {
				if p.sliceHi != nil {
					return errInvalid("More than one restriction was found for the end bound on %s", r.columns[0])
				}
				p.sliceHi = b
			}
		default:
			return errInvalid("Unsupported \"%s\" relation: %s", r.op, relationString(r))
		}
	}
	return nil
}

// tupleExpr evaluates a tuple of values into a serialized list (used only
// internally to carry clustering tuples).
type tupleExpr struct{ elems []expr }

func (e *tupleExpr) eval(b *bindings) (value, error) {
	parts, err := appendClusteringValues(make([][]byte, 0, len(e.elems)), e.elems, b)
	if err != nil {
		return value{}, err
	}
	return value{b: joinCollection(parts)}, nil
}

func compileFilter(t *table, r relation, spec func(string, *cqlType) receiver, specs []receiver) (filter, error) {
	col := t.byName[r.columns[0]]
	f := filter{col: col, op: r.op}
	switch {
	case r.op == opNE:
		return f, errInvalid("Unsupported \"!=\" relation: %s != <value>", col.name)
	case r.op == opIN && col.kind == colRegular:
		return f, errInvalid("IN predicates on non-primary-key columns (%s) is not yet supported", col.name)
	}
	switch r.op {
	case opEQ, opLT, opLE, opGT, opGE:
		if col.typ.isMultiCell() {
			return f, errInvalid("Collection column '%s' (%s) cannot be restricted by a '%s' relation", col.name, col.typ, r.op)
		}
		e, err := compileTerm(r.value, spec(col.name, col.typ), specs)
		if err != nil {
			return f, err
		}
		f.value = e
	case opIN:
		mv, err := compileMulti(r, col, spec, specs)
		if err != nil {
			return f, err
		}
		f.in = mv
	case opContains:
		if !col.typ.isCollection() {
			return f, errInvalid("Cannot use CONTAINS on non-collection column %s", col.name)
		}
		f.elemTy = col.typ.elem
		if col.typ.kind == kindMap {
			f.elemTy = col.typ.value
		}
		e, err := compileTerm(r.value, spec("value("+col.name+")", f.elemTy), specs)
		if err != nil {
			return f, err
		}
		f.value = e
	case opContainsKey:
		if col.typ.kind != kindMap {
			return f, errInvalid("Cannot use CONTAINS KEY on non-map column %s", col.name)
		}
		f.elemTy = col.typ.elem
		e, err := compileTerm(r.value, spec("key("+col.name+")", f.elemTy), specs)
		if err != nil {
			return f, err
		}
		f.value = e
	default:
		return f, errInvalid("Unsupported \"%s\" relation on column %s", r.op, col.name)
	}
	return f, nil
}

func compileSelector(t *table, e selectorExpr) (outCol, string, error) {
	switch x := e.(type) {
	case *selColumn:
		col := t.byName[x.name]
		if col == nil {
			return outCol{}, "", errInvalid("Undefined column name %s", x.name)
		}
		return outCol{kind: outColumn, col: col, typ: col.typ}, col.name, nil
	case *selCall:
		argCol := func() (*column, error) {
			if len(x.args) != 1 {
				return nil, errInvalid("Invalid number of arguments in call to function %s: 1 required but %d provided", x.name, len(x.args))
			}
			sc, ok := x.args[0].(*selColumn)
			if !ok {
				return nil, errInvalid("Only column names are supported as arguments of %s", x.name)
			}
			col := t.byName[sc.name]
			if col == nil {
				return nil, errInvalid("Undefined column name %s", sc.name)
			}
			return col, nil
		}
		switch x.name {
		case "count":
			if x.star {
				return outCol{kind: outAggregate, agg: "count", countStar: true, typ: typeBigint}, "count", nil
			}
			if len(x.args) == 1 {
				if _, ok := x.args[0].(*selTerm); ok {
					return outCol{kind: outAggregate, agg: "count", countStar: true, typ: typeBigint}, "count", nil
				}
			}
			col, err := argCol()
			if err != nil {
				return outCol{}, "", err
			}
			return outCol{kind: outAggregate, agg: "count", col: col, typ: typeBigint}, "system.count(" + col.name + ")", nil
		case "min", "max", "sum", "avg":
			col, err := argCol()
			if err != nil {
				return outCol{}, "", err
			}
			if col.typ.isMultiCell() {
				return outCol{}, "", errInvalid("Invalid call to function %s: collections are not supported", x.name)
			}
			if x.name == "sum" || x.name == "avg" {
				switch col.typ.kind {
				case kindInt, kindBigint, kindSmallint, kindTinyint, kindCounter, kindVarint, kindFloat, kindDouble, kindDecimal:
				default:
					return outCol{}, "", errInvalid("Invalid call to function %s, none of its type signatures match (column %s of type %s)", x.name, col.name, col.typ)
				}
			}
			typ := col.typ
			if typ.kind == kindCounter {
				typ = typeBigint
			}
			return outCol{kind: outAggregate, agg: x.name, col: col, typ: typ}, "system." + x.name + "(" + col.name + ")", nil
		case "writetime", "ttl":
			col, err := argCol()
			if err != nil {
				return outCol{}, "", err
			}
			if col.kind != colRegular {
				return outCol{}, "", errInvalid("Cannot use selection function %s on PRIMARY KEY part %s", x.name, col.name)
			}
			if col.typ.isMultiCell() {
				return outCol{}, "", errInvalid("Cannot use selection function %s on non-frozen collection %s", x.name, col.name)
			}
			if x.name == "ttl" {
				return outCol{kind: outTTL, col: col, typ: typeInt}, "ttl(" + col.name + ")", nil
			}
			return outCol{kind: outWritetime, col: col, typ: typeBigint}, "writetime(" + col.name + ")", nil
		case "token":
			if len(x.args) != len(t.partitionKey) {
				return outCol{}, "", errInvalid("Invalid number of arguments in call to function token: %d required but %d provided", len(t.partitionKey), len(x.args))
			}
			names := ""
			for i, a := range x.args {
				sc, ok := a.(*selColumn)
				if !ok || sc.name != t.partitionKey[i].name {
					return outCol{}, "", errInvalid("The token function arguments must be in the partition key order: %s", joinColumnNames(t.partitionKey))
				}
				if i > 0 {
					names += ", "
				}
				names += sc.name
			}
			return outCol{kind: outToken, typ: typeBigint}, "system.token(" + names + ")", nil
		}
		return outCol{}, "", errInvalid("Unknown function '%s'", x.name)
	case *selTerm:
		return outCol{}, "", errInvalid("Literals are only supported as arguments of count")
	}
	return outCol{}, "", errInvalid("unsupported selector")
}

// ---- execution ----

// ckRange is a clustering range in storage order.
type ckRange struct{ start, end ckBound }

// pageState is the decoded paging state: the last row the previous page
// returned, which the next page starts strictly after.
type pageState struct {
	key       []byte
	token     int64
	lastCK    [][]byte // empty in a table without clustering columns
	partDone  bool     // the partition was finished
	partCount int32    // rows returned from the partition so far
	total     int32    // rows returned by the query so far
}

func (s *pageState) encode() []byte {
	b := []byte{1}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.key)))
	b = append(b, s.key...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.token))
	flags := byte(0)
	if s.partDone {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint32(b, uint32(s.partCount))
	b = binary.BigEndian.AppendUint32(b, uint32(s.total))
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.lastCK)))
	for _, c := range s.lastCK {
		b = binary.BigEndian.AppendUint32(b, uint32(len(c)))
		b = append(b, c...)
	}
	return b
}

func decodePageState(b []byte) (*pageState, error) {
	bad := errProtocol("Invalid value for the paging state")
	if len(b) < 5 || b[0] != 1 {
		return nil, bad
	}
	b = b[1:]
	n := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	if n > len(b) {
		return nil, bad
	}
	s := &pageState{key: append([]byte(nil), b[:n]...)}
	b = b[n:]
	if len(b) < 8+1+4+4+2 {
		return nil, bad
	}
	s.token = int64(binary.BigEndian.Uint64(b))
	flags := b[8]
	s.partDone = flags&1 != 0
	s.partCount = int32(binary.BigEndian.Uint32(b[9:]))
	s.total = int32(binary.BigEndian.Uint32(b[13:]))
	k := int(binary.BigEndian.Uint16(b[17:]))
	b = b[19:]
	for i := 0; i < k; i++ {
		if len(b) < 4 {
			return nil, bad
		}
		l := int(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l > len(b) {
			return nil, bad
		}
		s.lastCK = append(s.lastCK, append([]byte(nil), b[:l]...))
		b = b[l:]
	}
	return s, nil
}

// evalInt evaluates LIMIT-like expressions.
func evalLimit(e expr, b *bindings, what string) (int32, error) {
	if e == nil {
		return math.MaxInt32, nil
	}
	v, err := e.eval(b)
	if err != nil {
		return 0, err
	}
	if v.b == nil || v.unset {
		return 0, errInvalid("Invalid null value of %s", what)
	}
	n := int32(decodeSigned(v.b))
	if n <= 0 {
		return 0, errInvalid("%s must be strictly positive", what)
	}
	return n, nil
}

// rowSink accumulates result rows for one page.
type rowSink struct {
	rows      [][][]byte
	pageSize  int32
	limit     int32
	perPart   int32
	total     int32
	partCount int32
	full      bool // the page is full and more may follow
	done      bool // LIMIT reached
	lastKey   []byte
	lastToken int64
	lastCK    [][]byte
	partDone  bool
}

// accept records a row; it returns false to stop the partition's scan.
func (s *rowSink) accept(out [][]byte, key []byte, token int64, ck [][]byte) bool {
	s.rows = append(s.rows, out)
	s.total++
	s.partCount++
	s.lastKey, s.lastToken, s.lastCK = key, token, ck
	s.partDone = false
	if s.total >= s.limit {
		s.done = true
		return false
	}
	if s.partCount >= s.perPart {
		s.partDone = true
	}
	if s.pageSize > 0 && int32(len(s.rows)) >= s.pageSize {
		s.full = true
		return false
	}
	return !s.partDone
}

func (p *selectPlan) execute(x *execCtx) (message.Message, error) {
	t := p.table
	store := t.store
	if t.virtual != nil {
		var err error
		if store, err = x.db.materialize(t, x.sess); err != nil {
			return nil, err
		}
	}
	nowSec := int32(x.now.Unix())

	limit, err := evalLimit(p.limit, x.bind, "LIMIT")
	if err != nil {
		return nil, err
	}
	perPart, err := evalLimit(p.perPartLimit, x.bind, "PER PARTITION LIMIT")
	if err != nil {
		return nil, err
	}
	if p.distinct {
		perPart = 1
	}
	ranges, err := p.clusteringRanges(store, x.bind)
	if err != nil {
		return nil, err
	}
	filters, err := p.evalFilters(x.bind)
	if err != nil {
		return nil, err
	}

	sink := &rowSink{pageSize: x.opts.pageSize, limit: limit, perPart: perPart}
	var state *pageState
	if len(x.opts.pagingState) > 0 && !p.aggregate {
		if state, err = decodePageState(x.opts.pagingState); err != nil {
			return nil, err
		}
		sink.total = state.total
		if sink.total >= limit {
			return p.result(x, nil, nil), nil
		}
	}
	if p.aggregate || p.orderByMerge {
		sink.pageSize = 0 // read everything, aggregate or sort, then return
		if p.orderByMerge && x.opts.pageSize > 0 {
			return nil, errInvalid("Cannot page queries with both ORDER BY and a IN restriction on the partition key; you must either remove the ORDER BY or the IN and sort client side, or disable paging for this query")
		}
	}
	var agg *aggregator
	if p.aggregate {
		agg = newAggregator(p.cols)
		sink.limit = math.MaxInt32
	}
	var merged []sortedRow

	visitPartition := func(part *partition, resume *pageState) {
		sink.partCount = 0
		rs := ranges
		if resume != nil {
			sink.partCount = resume.partCount
			if resume.partDone {
				return
			}
			rs = resumeRanges(store, ranges, resume.lastCK, p.reversed)
		}
		pkVals := splitPartitionKey(part.key, len(t.partitionKey))
		part.mu.RLock()
		defer part.mu.RUnlock()
		for _, rg := range rs {
			stop := false
			visit := func(r *row) bool {
				del := store.rowDeletion(part, r)
				if !rowLive(r, nowSec, del) {
					return true
				}
				if !p.matches(filters, pkVals, r, nowSec, del) {
					return true
				}
				if agg != nil {
					agg.add(p, pkVals, part.token, r, nowSec, del)
					return true
				}
				out := p.project(pkVals, part.token, r, nowSec, del)
				if p.orderByMerge {
					merged = append(merged, sortedRow{ck: r.ck, out: out})
					sink.partCount++
					if sink.partCount >= perPart {
						stop = true
						return false
					}
					return true
				}
				if !sink.accept(out, part.key, part.token, r.ck) {
					stop = true
					return false
				}
				return true
			}
			if p.reversed {
				store.descendRange(part, rg.start, rg.end, visit)
			} else {
				store.ascendRange(part, rg.start, rg.end, visit)
			}
			if stop {
				return
			}
		}
	}
	finished := func() bool { return sink.full || sink.done }

	store.gate.RLock()
	if p.pk != nil {
		keys, err := p.partitionKeys(x.bind)
		if err != nil {
			store.gate.RUnlock()
			return nil, err
		}
		start := 0
		if state != nil {
			start = len(keys)
			for i, k := range keys {
				if string(k) == string(state.key) {
					start = i
					break
				}
			}
		}
		for i := start; i < len(keys) && !finished(); i++ {
			part := store.lookup(keys[i])
			if part == nil {
				continue
			}
			var resume *pageState
			if state != nil && i == start {
				resume = state
			}
			visitPartition(part, resume)
		}
	} else {
		lo, hi, loInc, hiInc, empty, err := p.tokenBounds(x.bind)
		if err != nil {
			store.gate.RUnlock()
			return nil, err
		}
		if !empty {
			startTok, startKey := lo, []byte(nil)
			if state != nil {
				startTok, startKey = state.token, state.key
			}
			store.partitionsFrom(startTok, startKey, func(part *partition) bool {
				if part.token < lo || part.token == lo && !loInc {
					return true
				}
				if hi != nil && (part.token > *hi || part.token == *hi && !hiInc) {
					return false
				}
				var resume *pageState
				if state != nil && part.token == state.token && string(part.key) == string(state.key) {
					resume = state
				}
				visitPartition(part, resume)
				return !finished()
			})
		}
	}
	store.gate.RUnlock()

	if agg != nil {
		return p.result(x, [][][]byte{agg.result()}, nil), nil
	}
	if p.orderByMerge {
		sort.SliceStable(merged, func(i, j int) bool {
			c := store.compareRows(&row{ck: merged[i].ck}, &row{ck: merged[j].ck})
			if p.reversed {
				return c > 0
			}
			return c < 0
		})
		var rows [][][]byte
		for i := 0; i < len(merged) && int32(i) < limit; i++ {
			rows = append(rows, merged[i].out)
		}
		return p.result(x, rows, nil), nil
	}
	var next []byte
	if sink.full && !sink.done {
		ps := &pageState{key: sink.lastKey, token: sink.lastToken, lastCK: sink.lastCK, partDone: sink.partDone, partCount: sink.partCount, total: sink.total}
		next = ps.encode()
	}
	return p.result(x, sink.rows, next), nil
}

type sortedRow struct {
	ck  [][]byte
	out [][]byte
}

func (p *selectPlan) result(x *execCtx, rows [][][]byte, paging []byte) message.Message {
	md := &message.RowsMetadata{ColumnCount: int32(len(p.cols)), PagingState: paging}
	if !x.opts.skipMetadata {
		md.Columns = x.comp.result
	}
	if rows == nil {
		rows = [][][]byte{}
	}
	return &message.RowsResult{Metadata: md, Data: rows}
}

// partitionKeys evaluates the partition key restrictions into serialized
// keys (the cartesian product of IN lists, duplicates removed).
func (p *selectPlan) partitionKeys(b *bindings) ([][]byte, error) {
	combos, err := combinations([][][]byte{{}}, p.pk, p.table.partitionKey, b)
	if err != nil {
		return nil, err
	}
	keys := make([][]byte, 0, len(combos))
	seen := make(map[string]bool, len(combos))
	for _, c := range combos {
		k := partitionKeyBytes(c)
		if !seen[string(k)] {
			seen[string(k)] = true
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// tokenBounds evaluates token() restrictions; without them the range is
// the whole ring.
func (p *selectPlan) tokenBounds(b *bindings) (lo int64, hi *int64, loInc, hiInc, empty bool, err error) {
	lo, loInc = math.MinInt64, true
	if p.tokenLo != nil {
		v, err := p.tokenLo.values[0].eval(b)
		if err != nil {
			return 0, nil, false, false, false, err
		}
		if v.b == nil || v.unset {
			return 0, nil, false, false, false, errInvalid("Invalid null value for partition key token")
		}
		lo, loInc = decodeSigned(v.b), p.tokenLo.inclusive
	}
	if p.tokenHi != nil {
		v, err := p.tokenHi.values[0].eval(b)
		if err != nil {
			return 0, nil, false, false, false, err
		}
		if v.b == nil || v.unset {
			return 0, nil, false, false, false, errInvalid("Invalid null value for partition key token")
		}
		h := decodeSigned(v.b)
		hiInc = p.tokenHi.inclusive
		// The minimum token as an end bound means the end of the ring.
		if !(h == math.MinInt64 && hiInc && p.tokenLo != nil) {
			hi = &h
		}
	}
	if hi != nil && (*hi < lo || *hi == lo && !(loInc && hiInc)) {
		empty = true
	}
	return lo, hi, loInc, hiInc, empty, nil
}

// clusteringRanges evaluates the clustering restrictions into ranges in
// storage order (sorted, so reversed queries walk them backwards).
func (p *selectPlan) clusteringRanges(store *tableStore, b *bindings) ([]ckRange, error) {
	prefixes := [][][]byte{{}}
	if p.ckTuples != nil {
		vals, err := p.ckTuples.values(b, "clustering tuple")
		if err != nil {
			return nil, err
		}
		prefixes = prefixes[:0]
		for _, v := range vals {
			parts, err := splitCollection(v)
			if err != nil {
				return nil, err
			}
			prefixes = append(prefixes, parts)
		}
	}
	prefixes, err := combinations(prefixes, p.ckEq, p.table.clustering, b)
	if err != nil {
		return nil, err
	}
	if len(prefixes) > 1 {
		sort.Slice(prefixes, func(i, j int) bool {
			return store.compareRows(&row{ck: prefixes[i]}, &row{ck: prefixes[j]}) < 0
		})
		out := prefixes[:1]
		for _, pre := range prefixes[1:] {
			if store.compareRows(&row{ck: pre}, &row{ck: out[len(out)-1]}) != 0 {
				out = append(out, pre)
			}
		}
		prefixes = out
	}
	ranges := make([]ckRange, 0, len(prefixes))
	for _, pre := range prefixes {
		rg := ckRange{start: ckBound{prefix: pre, inclusive: true}, end: ckBound{prefix: pre, inclusive: true}}
		if p.sliceLo != nil {
			if rg.start, err = p.sliceLo.after(pre, b); err != nil {
				return nil, err
			}
		}
		if p.sliceHi != nil {
			if rg.end, err = p.sliceHi.after(pre, b); err != nil {
				return nil, err
			}
		}
		ranges = append(ranges, rg)
	}
	return ranges, nil
}

// resumeRanges trims the ranges to what follows lastCK in iteration order.
func resumeRanges(store *tableStore, ranges []ckRange, lastCK [][]byte, reversed bool) []ckRange {
	if len(lastCK) == 0 {
		// The empty clustering key is that of the only row of a partition
		// without clustering columns: nothing follows it. (A bound with an
		// empty prefix would mean "unbounded" and return the row again.)
		return nil
	}
	out := make([]ckRange, 0, len(ranges))
	after := ckBound{prefix: lastCK, inclusive: false}
	for _, rg := range ranges {
		if !reversed {
			if !store.beforeEnd(lastCK, rg.end) {
				continue // the whole range was returned
			}
			if store.afterStart(lastCK, rg.start) {
				rg.start = after
			}
		} else {
			if !store.afterStart(lastCK, rg.start) {
				continue
			}
			if store.beforeEnd(lastCK, rg.end) {
				rg.end = after
			}
		}
		out = append(out, rg)
	}
	return out
}

// evaluatedFilter is a filter with its values bound.
type evaluatedFilter struct {
	f    *filter
	val  []byte
	vals [][]byte
}

func (p *selectPlan) evalFilters(b *bindings) ([]evaluatedFilter, error) {
	out := make([]evaluatedFilter, len(p.filters))
	for i := range p.filters {
		f := &p.filters[i]
		out[i].f = f
		if f.in != nil {
			vals, err := f.in.values(b, f.col.name)
			if err != nil {
				return nil, err
			}
			out[i].vals = vals
			continue
		}
		v, err := f.value.eval(b)
		if err != nil {
			return nil, err
		}
		if v.unset {
			return nil, errInvalid("Invalid unset value for column %s", f.col.name)
		}
		if v.b == nil {
			return nil, errInvalid("Unsupported null value for column %s", f.col.name)
		}
		out[i].val = v.b
	}
	return out, nil
}

// columnValue returns the visible value of a column in a row, or nil.
func columnValue(col *column, pkVals [][]byte, r *row, now int32, del int64) []byte {
	switch col.kind {
	case colPartitionKey:
		if col.position < len(pkVals) {
			return pkVals[col.position]
		}
		return nil
	case colClustering:
		return r.ck[col.position]
	}
	if col.slot >= len(r.cells) {
		return nil
	}
	c := &r.cells[col.slot]
	if c.coll != nil {
		return serializeCollection(col.typ, c.coll, now, del)
	}
	if c.live(now, del) {
		return c.value
	}
	return nil
}

// serializeCollection renders the live elements of a multi-cell collection,
// or nil when none is live (an empty collection is null in CQL).
func serializeCollection(t *cqlType, cc *collCells, now int32, del int64) []byte {
	if cc.del > del {
		del = cc.del
	}
	var keys, vals [][]byte
	for i := range cc.elems {
		e := &cc.elems[i]
		if !e.c.live(now, del) {
			continue
		}
		switch t.kind {
		case kindSet:
			keys = append(keys, e.key)
		case kindList:
			keys = append(keys, e.c.value)
		default:
			keys, vals = append(keys, e.key), append(vals, e.c.value)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if t.kind == kindMap {
		return joinMap(keys, vals)
	}
	return joinCollection(keys)
}

func (p *selectPlan) matches(filters []evaluatedFilter, pkVals [][]byte, r *row, now int32, del int64) bool {
	for i := range filters {
		ef := &filters[i]
		f := ef.f
		v := columnValue(f.col, pkVals, r, now, del)
		if v == nil {
			return false
		}
		switch f.op {
		case opIN:
			found := false
			for _, w := range ef.vals {
				if f.col.typ.compare(v, w) == 0 {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		case opContains, opContainsKey:
			if !collectionContains(f.col.typ, v, ef.val, f.op == opContainsKey) {
				return false
			}
		default:
			c := f.col.typ.compare(v, ef.val)
			ok := false
			switch f.op {
			case opEQ:
				ok = c == 0
			case opNE:
				ok = c != 0
			case opLT:
				ok = c < 0
			case opLE:
				ok = c <= 0
			case opGT:
				ok = c > 0
			case opGE:
				ok = c >= 0
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

func collectionContains(t *cqlType, coll, v []byte, key bool) bool {
	switch t.kind {
	case kindList, kindSet:
		elems, _ := splitCollection(coll)
		for _, e := range elems {
			if t.elem.compare(e, v) == 0 {
				return true
			}
		}
	case kindMap:
		keys, vals, _ := splitMap(coll)
		if key {
			for _, k := range keys {
				if t.elem.compare(k, v) == 0 {
					return true
				}
			}
		} else {
			for _, w := range vals {
				if t.value.compare(w, v) == 0 {
					return true
				}
			}
		}
	}
	return false
}

// project builds one output row.
func (p *selectPlan) project(pkVals [][]byte, token int64, r *row, now int32, del int64) [][]byte {
	out := make([][]byte, len(p.cols))
	for i := range p.cols {
		o := &p.cols[i]
		switch o.kind {
		case outColumn:
			out[i] = columnValue(o.col, pkVals, r, now, del)
		case outToken:
			out[i] = int64Bytes(token)
		case outWritetime, outTTL:
			if o.col.slot >= len(r.cells) {
				continue
			}
			c := &r.cells[o.col.slot]
			if !c.live(now, del) {
				continue
			}
			if o.kind == outWritetime {
				out[i] = int64Bytes(c.ts)
			} else if c.exp != 0 {
				out[i] = int32Bytes(c.exp - now)
			}
		}
	}
	return out
}

// aggregator computes aggregate selections (and the first row's value of
// plain columns, as Cassandra does).
type aggregator struct {
	cols  []outCol
	count []int64
	first [][]byte
	have  bool
	best  [][]byte   // min/max
	sumI  []*big.Int // integer sums
	sumF  []float64
	sumD  []*big.Rat
	n     []int64
}

func newAggregator(cols []outCol) *aggregator {
	a := &aggregator{cols: cols, count: make([]int64, len(cols)), best: make([][]byte, len(cols)),
		sumI: make([]*big.Int, len(cols)), sumF: make([]float64, len(cols)), sumD: make([]*big.Rat, len(cols)), n: make([]int64, len(cols))}
	for i := range cols {
		a.sumI[i] = new(big.Int)
		a.sumD[i] = new(big.Rat)
	}
	return a
}

func (a *aggregator) add(p *selectPlan, pkVals [][]byte, token int64, r *row, now int32, del int64) {
	if !a.have {
		a.first = p.project(pkVals, token, r, now, del)
		a.have = true
	}
	for i := range a.cols {
		o := &a.cols[i]
		if o.kind != outAggregate {
			continue
		}
		if o.countStar {
			a.count[i]++
			continue
		}
		v := columnValue(o.col, pkVals, r, now, del)
		if v == nil {
			continue
		}
		switch o.agg {
		case "count":
			a.count[i]++
		case "min":
			if a.best[i] == nil || o.col.typ.compare(v, a.best[i]) < 0 {
				a.best[i] = v
			}
		case "max":
			if a.best[i] == nil || o.col.typ.compare(v, a.best[i]) > 0 {
				a.best[i] = v
			}
		case "sum", "avg":
			a.n[i]++
			switch o.col.typ.kind {
			case kindFloat:
				a.sumF[i] += float64(math.Float32frombits(binary.BigEndian.Uint32(v)))
			case kindDouble:
				a.sumF[i] += math.Float64frombits(binary.BigEndian.Uint64(v))
			case kindDecimal:
				if r, ok := decimalRat(v); ok {
					a.sumD[i].Add(a.sumD[i], r)
				}
			case kindVarint:
				a.sumI[i].Add(a.sumI[i], decodeVarint(v))
			default:
				a.sumI[i].Add(a.sumI[i], big.NewInt(decodeSigned(v)))
			}
		}
	}
}

func (a *aggregator) result() [][]byte {
	out := make([][]byte, len(a.cols))
	for i := range a.cols {
		o := &a.cols[i]
		if o.kind != outAggregate {
			if a.have {
				out[i] = a.first[i]
			}
			continue
		}
		switch o.agg {
		case "count":
			out[i] = int64Bytes(a.count[i])
		case "min", "max":
			out[i] = a.best[i]
		case "sum", "avg":
			out[i] = numericResult(o.typ, a.sumI[i], a.sumF[i], a.sumD[i], a.n[i], o.agg == "avg")
		}
	}
	return out
}

func numericResult(t *cqlType, sumI *big.Int, sumF float64, sumD *big.Rat, n int64, avg bool) []byte {
	switch t.kind {
	case kindFloat, kindDouble:
		v := sumF
		if avg {
			if n == 0 {
				v = 0
			} else {
				v /= float64(n)
			}
		}
		if t.kind == kindFloat {
			b := make([]byte, 4)
			binary.BigEndian.PutUint32(b, math.Float32bits(float32(v)))
			return b
		}
		b := make([]byte, 8)
		binary.BigEndian.PutUint64(b, math.Float64bits(v))
		return b
	case kindDecimal:
		r := new(big.Rat).Set(sumD)
		if avg && n > 0 {
			r.Quo(r, new(big.Rat).SetInt64(n))
		}
		b, _ := decimalFromString(r.FloatString(10))
		return b
	case kindVarint:
		v := new(big.Int).Set(sumI)
		if avg && n > 0 {
			v.Quo(v, big.NewInt(n))
		}
		return encodeVarint(v)
	}
	v := new(big.Int).Set(sumI)
	if avg && n > 0 {
		v.Quo(v, big.NewInt(n))
	}
	i := v.Int64()
	switch t.kind {
	case kindInt:
		return int32Bytes(int32(i))
	case kindSmallint:
		return []byte{byte(i >> 8), byte(i)}
	case kindTinyint:
		return []byte{byte(i)}
	}
	return int64Bytes(i)
}
