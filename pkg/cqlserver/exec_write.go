package cqlserver

import (
	"bytes"
	"encoding/binary"
	"sort"
	"strings"

	"github.com/datastax/go-cassandra-native-protocol/message"
)

type modKind uint8

const (
	modInsert modKind = iota
	modUpdate
	modDelete
)

type opKind uint8

const (
	opSetValue   opKind = iota // c = v
	opAppend                   // c = c + v (counter increment, collection add)
	opRemove                   // c = c - v
	opPrepend                  // l = v + l
	opSetElem                  // c[k] = v
	opDeleteCol                // DELETE c
	opDeleteElem               // DELETE c[k]
)

// colOp is one column operation of a modification.
type colOp struct {
	col   *column
	kind  opKind
	value expr
	key   expr
}

// condPlan is one IF condition.
type condPlan struct {
	col   *column
	elem  expr
	op    string
	value expr
	in    *multiValue
}

// modPlan is a compiled INSERT, UPDATE or DELETE.
type modPlan struct {
	table       *table
	kind        modKind
	pk          []*multiValue
	ck          []*multiValue // EQ/IN on a clustering prefix
	sliceLo     *sliceBound   // DELETE range on the next clustering column
	sliceHi     *sliceBound
	ops         []colOp
	ttl         expr
	timestamp   expr
	ifNotExists bool
	ifExists    bool
	conds       []condPlan
	condCols    []*column
	needsRead   bool // counters and list index operations read the row
}

func (p *modPlan) conditional() bool { return p.ifNotExists || p.ifExists || len(p.conds) > 0 }

func (d *db) compileModification(c *compiled, st statement) error {
	var ref tableRef
	switch s := st.(type) {
	case *insertStmt:
		ref = s.table
	case *updateStmt:
		ref = s.table
	case *deleteStmt:
		ref = s.table
	}
	t, err := d.lookupTable(ref, c.keyspace)
	if err != nil {
		return err
	}
	if t.virtual != nil {
		return errInvalid("Modification statements are not supported on system table %s.%s", t.keyspace, t.name)
	}
	c.tables = []*table{t}
	p, err := compileModPlan(t, st, c.specs)
	if err != nil {
		return err
	}
	c.pkIndices = pkIndices(p.pk)
	c.plan = p
	return nil
}

func compileModPlan(t *table, st statement, specs []receiver) (*modPlan, error) {
	spec := func(name string, typ *cqlType) receiver {
		return receiver{name: name, typ: typ, keyspace: t.keyspace, table: t.name}
	}
	p := &modPlan{table: t}
	var using usingClause
	var where []relation
	switch s := st.(type) {
	case *insertStmt:
		p.kind, using, p.ifNotExists = modInsert, s.using, s.ifNotExists
		if t.counter {
			return nil, errInvalid("INSERT statements are not allowed on counter tables, use UPDATE instead")
		}
		if len(s.columns) != len(s.values) {
			return nil, errInvalid("Unmatched column names/values")
		}
		p.pk = make([]*multiValue, len(t.partitionKey))
		p.ck = make([]*multiValue, len(t.clustering))
		seen := map[string]bool{}
		for i, name := range s.columns {
			col := t.byName[name]
			if col == nil {
				return nil, errInvalid("Undefined column name %s", name)
			}
			if seen[name] {
				return nil, errInvalid("Multiple definitions found for column %s", name)
			}
			seen[name] = true
			e, err := compileTerm(s.values[i], spec(col.name, col.typ), specs)
			if err != nil {
				return nil, err
			}
			switch col.kind {
			case colPartitionKey:
				p.pk[col.position] = &multiValue{single: e, typ: col.typ}
			case colClustering:
				p.ck[col.position] = &multiValue{single: e, typ: col.typ}
			default:
				p.ops = append(p.ops, colOp{col: col, kind: opSetValue, value: e})
			}
		}
		if err := checkKeysComplete(t, p.pk, p.ck, true); err != nil {
			return nil, err
		}
	case *updateStmt:
		p.kind, using, where, p.ifExists = modUpdate, s.using, s.where, s.ifExists
		seen := map[string]bool{}
		for _, a := range s.assignments {
			col := t.byName[a.column]
			if col == nil {
				return nil, errInvalid("Undefined column name %s", a.column)
			}
			if col.kind != colRegular {
				return nil, errInvalid("PRIMARY KEY part %s found in SET part", col.name)
			}
			if seen[col.name] && a.op != assignSetElement {
				return nil, errInvalid("Multiple incompatible setting of column %s", col.name)
			}
			seen[col.name] = true
			op, err := compileAssignment(t, col, a, spec, specs)
			if err != nil {
				return nil, err
			}
			p.ops = append(p.ops, op)
		}
	case *deleteStmt:
		p.kind, using, where, p.ifExists = modDelete, s.using, s.where, s.ifExists
		for _, tg := range s.targets {
			col := t.byName[tg.column]
			if col == nil {
				return nil, errInvalid("Undefined column name %s", tg.column)
			}
			if col.kind != colRegular {
				return nil, errInvalid("Invalid identifier %s for deletion (should not be a PRIMARY KEY part)", col.name)
			}
			op := colOp{col: col, kind: opDeleteCol}
			if tg.elem != nil {
				if !col.typ.isMultiCell() || col.typ.kind == kindSet {
					return nil, errInvalid("Invalid operation for column %s: element deletion is only supported on non-frozen lists and maps", col.name)
				}
				keyType := col.typ.elem
				name := "key(" + col.name + ")"
				if col.typ.kind == kindList {
					keyType, name = typeInt, "idx("+col.name+")"
				}
				k, err := compileTerm(tg.elem, spec(name, keyType), specs)
				if err != nil {
					return nil, err
				}
				op.kind, op.key = opDeleteElem, k
			}
			p.ops = append(p.ops, op)
		}
	}
	if t.counter && using.ttl != nil {
		return nil, errInvalid("Cannot provide custom TTL for counter updates")
	}
	if t.counter && using.timestamp != nil {
		return nil, errInvalid("Cannot provide custom timestamp for counter updates")
	}
	var err error
	if using.ttl != nil {
		if p.ttl, err = compileTerm(using.ttl, spec("[ttl]", typeInt), specs); err != nil {
			return nil, err
		}
	}
	if using.timestamp != nil {
		if p.timestamp, err = compileTerm(using.timestamp, spec("[timestamp]", typeBigint), specs); err != nil {
			return nil, err
		}
	}
	if p.kind != modInsert {
		if err := p.compileWhere(t, where, spec, specs); err != nil {
			return nil, err
		}
	}
	// Conditions.
	var conds []condition
	switch s := st.(type) {
	case *updateStmt:
		conds = s.conditions
	case *deleteStmt:
		conds = s.conditions
	}
	seenCond := map[string]bool{}
	for _, cd := range conds {
		col := t.byName[cd.column]
		if col == nil {
			return nil, errInvalid("Undefined column name %s", cd.column)
		}
		if col.kind != colRegular {
			return nil, errInvalid("PRIMARY KEY column '%s' cannot have IF conditions", col.name)
		}
		cp, err := compileCondition(col, cd, spec, specs)
		if err != nil {
			return nil, err
		}
		p.conds = append(p.conds, cp)
		if !seenCond[col.name] {
			seenCond[col.name] = true
			p.condCols = append(p.condCols, col)
		}
	}
	if p.conditional() {
		if t.counter {
			return nil, errInvalid("Conditional updates are not supported on counter tables")
		}
		if p.timestamp != nil {
			return nil, errInvalid("Cannot provide custom timestamp for conditional updates")
		}
		for _, mv := range p.pk {
			if mv.single == nil {
				return nil, errInvalid("IN on the partition key is not supported with conditional %s", strings.ToLower(st.statementKind())+"s")
			}
		}
		for _, mv := range p.ck {
			if mv.single == nil {
				return nil, errInvalid("IN on the clustering key columns is not supported with conditional %s", strings.ToLower(st.statementKind())+"s")
			}
		}
		if len(p.ck) < len(t.clustering) || p.sliceLo != nil || p.sliceHi != nil {
			if p.kind == modDelete {
				return nil, errInvalid("DELETE statements must restrict all PRIMARY KEY columns with equality relations in order to use IF conditions")
			}
		}
	}
	for _, op := range p.ops {
		if op.col.typ.kind == kindCounter || (op.col.typ.kind == kindList && (op.kind == opSetElem || op.kind == opDeleteElem || op.kind == opRemove)) {
			p.needsRead = true
		}
	}
	return p, nil
}

// checkKeysComplete reports missing primary key parts of INSERT and UPDATE.
func checkKeysComplete(t *table, pk, ck []*multiValue, requireCK bool) error {
	var missing []string
	for i, mv := range pk {
		if mv == nil {
			missing = append(missing, t.partitionKey[i].name)
		}
	}
	if len(missing) > 0 {
		return errInvalid("Some partition key parts are missing: %s", strings.Join(missing, ", "))
	}
	if !requireCK {
		return nil
	}
	for i := range t.clustering {
		if i >= len(ck) || ck[i] == nil {
			missing = append(missing, t.clustering[i].name)
		}
	}
	if len(missing) > 0 {
		return errInvalid("Some clustering keys are missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

func (p *modPlan) compileWhere(t *table, where []relation, spec func(string, *cqlType) receiver, specs []receiver) error {
	stmtName := "UPDATE"
	if p.kind == modDelete {
		stmtName = "DELETE"
	}
	pk := make([]*multiValue, len(t.partitionKey))
	ck := make([]*multiValue, len(t.clustering))
	var lo, hi *sliceBound
	sliceAt := -1
	for _, r := range where {
		switch r.lhs {
		case lhsToken:
			return errInvalid("The token function cannot be used in WHERE clauses for %s statements", stmtName)
		case lhsTuple:
			return errInvalid("Multi-column relations are not supported in %s statements by this server", stmtName)
		}
		col := t.byName[r.columns[0]]
		if col == nil {
			return errInvalid("Undefined column name %s", r.columns[0])
		}
		switch col.kind {
		case colRegular:
			return errInvalid("Non PRIMARY KEY columns found in where clause: %s ", col.name)
		case colPartitionKey:
			if r.op != opEQ && r.op != opIN {
				return errInvalid("Only EQ and IN relation are supported on the partition key (unless you use the token() function) for %s statements", stmtName)
			}
			if pk[col.position] != nil {
				return errInvalid("%s cannot be restricted by more than one relation if it includes an Equal", col.name)
			}
			mv, err := compileMulti(r, col, spec, specs)
			if err != nil {
				return err
			}
			pk[col.position] = mv
		case colClustering:
			switch r.op {
			case opEQ, opIN:
				if ck[col.position] != nil {
					return errInvalid("%s cannot be restricted by more than one relation if it includes an Equal", col.name)
				}
				mv, err := compileMulti(r, col, spec, specs)
				if err != nil {
					return err
				}
				ck[col.position] = mv
			case opGT, opGE, opLT, opLE:
				if p.kind != modDelete {
					return errInvalid("Slice restrictions are not supported on the clustering columns in UPDATE statements")
				}
				if sliceAt >= 0 && sliceAt != col.position {
					return errInvalid("Clustering column \"%s\" cannot be restricted (preceding column \"%s\" is restricted by a non-EQ relation)", col.name, t.clustering[sliceAt].name)
				}
				sliceAt = col.position
				e, err := compileTerm(r.value, spec(col.name, col.typ), specs)
				if err != nil {
					return err
				}
				b := &sliceBound{values: []expr{e}, inclusive: r.op == opGE || r.op == opLE}
				if (r.op == opGT || r.op == opGE) != col.desc {
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
				return errInvalid("Unsupported \"%s\" relation on column %s in %s statements", r.op, col.name, stmtName)
			}
		}
	}
	p.pk = pk
	// The clustering restrictions must form a prefix, optionally followed
	// by the slice.
	n := 0
	for n < len(ck) && ck[n] != nil {
		n++
	}
	for i := n; i < len(ck); i++ {
		if ck[i] != nil {
			return errInvalid("PRIMARY KEY column \"%s\" cannot be restricted as preceding column \"%s\" is not restricted", t.clustering[i].name, t.clustering[n].name)
		}
	}
	if sliceAt >= 0 && sliceAt != n {
		return errInvalid("PRIMARY KEY column \"%s\" cannot be restricted as preceding column \"%s\" is not restricted", t.clustering[sliceAt].name, t.clustering[n].name)
	}
	p.ck = ck[:n]
	p.sliceLo, p.sliceHi = lo, hi
	if p.kind == modUpdate {
		return checkKeysComplete(t, pk, p.ck, true)
	}
	if err := checkKeysComplete(t, pk, nil, false); err != nil {
		return err
	}
	if len(p.ops) > 0 && (n < len(t.clustering) || sliceAt >= 0) {
		if sliceAt >= 0 || n > 0 {
			return errInvalid("Range deletions are not supported for specific columns")
		}
		if len(t.clustering) > 0 {
			var missing []string
			for _, c := range t.clustering {
				missing = append(missing, c.name)
			}
			return errInvalid("Some clustering keys are missing: %s", strings.Join(missing, ", "))
		}
	}
	return nil
}

func compileAssignment(t *table, col *column, a assignment, spec func(string, *cqlType) receiver, specs []receiver) (colOp, error) {
	op := colOp{col: col}
	typ := col.typ
	switch a.op {
	case assignSet:
		if typ.kind == kindCounter {
			return op, errInvalid("Cannot set the value of counter column %s (counters can only be incremented/decremented, not set)", col.name)
		}
		e, err := compileTerm(a.value, spec(col.name, typ), specs)
		op.kind, op.value = opSetValue, e
		return op, err
	case assignAdd, assignSub:
		switch {
		case typ.kind == kindCounter:
			e, err := compileTerm(a.value, spec(col.name, typeCounter), specs)
			op.value = e
			op.kind = opAppend
			if a.op == assignSub {
				op.kind = opRemove
			}
			return op, err
		case typ.isMultiCell():
			recvType := typ
			if a.op == assignSub && typ.kind == kindMap {
				recvType = setOf(typ.elem, false)
			}
			if a.op == assignSub && typ.kind == kindList {
				recvType = listOf(typ.elem, false)
			}
			e, err := compileTerm(a.value, spec(col.name, recvType), specs)
			op.value = e
			op.kind = opAppend
			if a.op == assignSub {
				op.kind = opRemove
			}
			return op, err
		}
		sign := "+"
		if a.op == assignSub {
			sign = "-"
		}
		return op, errInvalid("Invalid operation (%s = %s %s ?) for non counter column %s", col.name, col.name, sign, col.name)
	case assignPrepend:
		if typ.kind != kindList || typ.frozen {
			return op, errInvalid("Invalid operation (%s = ? + %s) for non list column %s", col.name, col.name, col.name)
		}
		e, err := compileTerm(a.value, spec(col.name, typ), specs)
		op.kind, op.value = opPrepend, e
		return op, err
	case assignSetElement:
		if !typ.isMultiCell() || typ.kind == kindSet {
			return op, errInvalid("Invalid operation (%s[?] = ?) for non-map, non-list column %s", col.name, col.name)
		}
		keyType, valType, keyName := typ.elem, typ.value, "key("+col.name+")"
		if typ.kind == kindList {
			keyType, valType, keyName = typeInt, typ.elem, "idx("+col.name+")"
		}
		k, err := compileTerm(a.key, spec(keyName, keyType), specs)
		if err != nil {
			return op, err
		}
		v, err := compileTerm(a.value, spec("value("+col.name+")", valType), specs)
		op.kind, op.key, op.value = opSetElem, k, v
		return op, err
	}
	return op, errInvalid("unsupported assignment on %s", col.name)
}

func compileCondition(col *column, cd condition, spec func(string, *cqlType) receiver, specs []receiver) (condPlan, error) {
	cp := condPlan{col: col, op: cd.op}
	typ := col.typ
	name := col.name
	if cd.elem != nil {
		if !typ.isMultiCell() || typ.kind == kindSet {
			return cp, errInvalid("Invalid element access syntax for non-collection column %s", col.name)
		}
		keyType := typ.elem
		if typ.kind == kindList {
			keyType = typeInt
		}
		k, err := compileTerm(cd.elem, spec("key("+col.name+")", keyType), specs)
		if err != nil {
			return cp, err
		}
		cp.elem = k
		typ = typ.elem
		if col.typ.kind == kindMap {
			typ = col.typ.value
		}
		name = "value(" + col.name + ")"
	}
	switch cd.op {
	case opEQ, opNE, opLT, opLE, opGT, opGE:
		e, err := compileTerm(cd.value, spec(name, typ), specs)
		cp.value = e
		return cp, err
	case opIN:
		mv := &multiValue{typ: typ}
		if cd.value != nil {
			e, err := compileTerm(cd.value, spec("in("+name+")", listOf(typ, false)), specs)
			if err != nil {
				return cp, err
			}
			mv.marker = e
		} else {
			for _, v := range cd.in {
				e, err := compileTerm(v, spec(name, typ), specs)
				if err != nil {
					return cp, err
				}
				mv.list = append(mv.list, e)
			}
		}
		cp.in = mv
		return cp, nil
	}
	return cp, errInvalid("Unsupported operator %s in IF condition on %s", cd.op, col.name)
}

// ---- execution ----

// evalOp is a column operation with its values bound.
type evalOp struct {
	op  *colOp
	val value
	key value
}

// writeTarget is one partition a statement writes, with what to write.
type writeTarget struct {
	plan      *modPlan
	table     *table
	key       []byte
	token     int64
	cks       [][][]byte // rows written (full clustering keys)
	rangeDels []rangeTombstone
	partDel   bool
	ts        int64
	ttl       int32
	ops       []evalOp
	conds     []evaluatedCond
}

type evaluatedCond struct {
	c    *condPlan
	elem value
	val  value
	vals [][]byte
}

// targets evaluates a modification into write targets.
func (p *modPlan) targets(x *execCtx, batchTS *int64) ([]*writeTarget, error) {
	t := p.table
	b := x.bind
	keys, err := combinations([][][]byte{{}}, p.pk, t.partitionKey, b)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if len(partitionKeyBytes(k)) == 0 {
			return nil, errInvalid("Key may not be empty")
		}
	}
	cks, err := combinations([][][]byte{{}}, p.ck, t.clustering, b)
	if err != nil {
		return nil, err
	}

	// Timestamp and TTL.
	var ts int64
	switch {
	case p.timestamp != nil:
		v, err := p.timestamp.eval(b)
		if err != nil {
			return nil, err
		}
		if v.b == nil {
			return nil, errInvalid("Invalid null value of timestamp")
		}
		if v.unset {
			ts = x.db.nowMicros()
		} else {
			ts = decodeSigned(v.b)
		}
		if batchTS != nil {
			return nil, errInvalid("Timestamp must be set either on BATCH or individual statements")
		}
	case batchTS != nil:
		ts = *batchTS // the batch chose it (server time for conditional batches)
	case x.opts.timestamp != nil && !p.conditional():
		// Like Cassandra, conditional writes take the server's (Paxos
		// ballot) time rather than the client's default timestamp.
		ts = *x.opts.timestamp
	default:
		ts = x.db.nowMicros()
	}
	ttl := t.opts.defaultTTL
	if p.ttl != nil {
		v, err := p.ttl.eval(b)
		if err != nil {
			return nil, err
		}
		if !v.unset {
			ttl = 0
			if v.b != nil {
				n := decodeSigned(v.b)
				if n < 0 {
					return nil, errInvalid("A TTL must be greater or equal to 0, but was %d", n)
				}
				if n > maxTTL {
					return nil, errInvalid("ttl is too large. requested (%d) maximum (%d)", n, maxTTL)
				}
				ttl = int32(n)
			}
		}
	}

	ops := make([]evalOp, len(p.ops))
	for i := range p.ops {
		op := &p.ops[i]
		ops[i].op = op
		if op.value != nil {
			v, err := op.value.eval(b)
			if err != nil {
				return nil, err
			}
			ops[i].val = v
			if op.col.typ.kind == kindCounter && !v.unset && v.b == nil {
				return nil, errInvalid("Invalid null value for counter increment")
			}
		}
		if op.key != nil {
			k, err := op.key.eval(b)
			if err != nil {
				return nil, err
			}
			if k.unset {
				return nil, errInvalid("Invalid unset map key")
			}
			if k.b == nil {
				return nil, errInvalid("Invalid null %s", "map key")
			}
			ops[i].key = k
		}
	}
	conds := make([]evaluatedCond, len(p.conds))
	for i := range p.conds {
		cp := &p.conds[i]
		conds[i].c = cp
		if cp.elem != nil {
			v, err := cp.elem.eval(b)
			if err != nil {
				return nil, err
			}
			if v.b == nil || v.unset {
				return nil, errInvalid("Invalid null value for %s element access", cp.col.name)
			}
			conds[i].elem = v
		}
		if cp.in != nil {
			vals, err := cp.in.values(b, cp.col.name)
			if err != nil {
				return nil, err
			}
			conds[i].vals = vals
			continue
		}
		v, err := cp.value.eval(b)
		if err != nil {
			return nil, err
		}
		if v.unset {
			return nil, errInvalid("Invalid 'unset' value in condition")
		}
		if v.b == nil && cp.op != opEQ && cp.op != opNE {
			return nil, errInvalid("Invalid comparison with null for operator \"%s\"", cp.op)
		}
		conds[i].val = v
	}

	out := make([]*writeTarget, 0, len(keys))
	for _, k := range keys {
		key := partitionKeyBytes(k)
		wt := &writeTarget{plan: p, table: t, key: key, token: murmur3Token(key), ts: ts, ttl: ttl, ops: ops, conds: conds}
		switch {
		case p.kind == modDelete && len(p.ops) == 0 && len(p.ck) == 0 && p.sliceLo == nil && p.sliceHi == nil:
			wt.partDel = true
		case p.kind == modDelete && len(p.ops) == 0 && (len(p.ck) < len(t.clustering) || p.sliceLo != nil || p.sliceHi != nil):
			for _, pre := range cks {
				rt := rangeTombstone{start: ckBound{prefix: pre, inclusive: true}, end: ckBound{prefix: pre, inclusive: true}, ts: ts}
				if p.sliceLo != nil {
					if rt.start, err = p.sliceLo.after(pre, b); err != nil {
						return nil, err
					}
				}
				if p.sliceHi != nil {
					if rt.end, err = p.sliceHi.after(pre, b); err != nil {
						return nil, err
					}
				}
				wt.rangeDels = append(wt.rangeDels, rt)
			}
		default:
			wt.cks = cks
		}
		out = append(out, wt)
	}
	return out, nil
}

// build computes the fragment a target writes; it runs under the
// partition's lock so that read-modify-write operations (counters, list
// indexes) are atomic.
func (wt *writeTarget) build(d *db, part *partition, now int32, overlay map[counterKey]cell) (*fragment, error) {
	t := wt.table
	store := t.store
	f := newFragment()
	if wt.partDel {
		f.del = wt.ts
		return f, nil
	}
	f.rts = wt.rangeDels
	p := wt.plan
	for _, ck := range wt.cks {
		fr := newRow(ck)
		if p.kind == modDelete && len(p.ops) == 0 {
			fr.del = wt.ts
			f.rows = append(f.rows, fr)
			continue
		}
		if p.kind == modInsert {
			fr.marker = liveness{ts: wt.ts}
			if wt.ttl > 0 {
				fr.marker.ttl, fr.marker.exp = wt.ttl, now+wt.ttl
			}
		}
		fr.cells = make([]cell, t.nSlots)
		for i := range fr.cells {
			fr.cells[i] = emptyCell
		}
		var cur *row
		var curDel int64 = noTimestamp
		if p.needsRead {
			if cur = part.findRow(ck); cur != nil {
				curDel = store.rowDeletion(part, cur)
			} else {
				curDel = part.del
			}
		}
		for i := range wt.ops {
			if err := wt.applyOp(d, part, fr, &wt.ops[i], cur, curDel, now, overlay); err != nil {
				return nil, err
			}
		}
		f.rows = append(f.rows, fr)
	}
	return f, nil
}

func (wt *writeTarget) cell(v []byte, now int32) cell {
	if v == nil {
		return cell{ts: wt.ts, tomb: true}
	}
	c := cell{ts: wt.ts, value: v}
	if wt.ttl > 0 {
		c.ttl, c.exp = wt.ttl, now+wt.ttl
	}
	return c
}

// listKey returns an ordering key for a new list element: appends get
// increasing keys, prepends decreasing ones.
func listKey(d *db, prepend bool) []byte {
	k := make([]byte, 16)
	micros := uint64(d.nowMicros())
	pos := uint64(1<<63) + micros
	if prepend {
		pos = uint64(1<<63) - micros
	}
	binary.BigEndian.PutUint64(k, pos)
	copy(k[8:], d.node.hostID[:8])
	return k
}

// liveElems lists the live elements of a collection cell in key order.
func liveElems(r *row, slot int, now int32, del int64) []collElem {
	if r == nil || slot >= len(r.cells) || r.cells[slot].coll == nil {
		return nil
	}
	cc := r.cells[slot].coll
	if cc.del > del {
		del = cc.del
	}
	var out []collElem
	for _, e := range cc.elems {
		if e.c.live(now, del) {
			out = append(out, e)
		}
	}
	return out
}

func (wt *writeTarget) applyOp(d *db, part *partition, fr *row, eo *evalOp, cur *row, curDel int64, now int32, overlay map[counterKey]cell) error {
	op := eo.op
	col := op.col
	slot := col.slot
	if eo.val.unset {
		return nil
	}
	typ := col.typ
	if typ.kind == kindCounter {
		delta := int64(0)
		if eo.val.b != nil {
			delta = decodeSigned(eo.val.b)
		}
		if op.kind == opRemove {
			delta = -delta
		}
		base, baseTS := int64(0), int64(noTimestamp)
		if cur != nil && slot < len(cur.cells) {
			c := &cur.cells[slot]
			if c.live(now, curDel) {
				base = decodeSigned(c.value)
			}
			baseTS = c.ts
		}
		var key counterKey
		if overlay != nil {
			key = counterKey{part: part, ck: ckString(fr.ck), slot: slot}
			if c, ok := overlay[key]; ok {
				base, baseTS = decodeSigned(c.value), c.ts
			}
		}
		ts := wt.ts
		if ts <= baseTS {
			ts = baseTS + 1
		}
		fr.cells[slot] = cell{ts: ts, value: int64Bytes(base + delta)}
		if overlay != nil {
			overlay[key] = fr.cells[slot]
		}
		return nil
	}
	if !typ.isMultiCell() {
		switch op.kind {
		case opSetValue:
			fr.cells[slot] = wt.cell(eo.val.b, now)
		case opDeleteCol:
			fr.cells[slot] = cell{ts: wt.ts, tomb: true}
		}
		return nil
	}
	fc := &fr.cells[slot]
	if fc.coll == nil {
		fc.coll = &collCells{del: noTimestamp}
	}
	cc := fc.coll
	addElems := func(v []byte, prepend bool) {
		switch typ.kind {
		case kindSet:
			elems, _ := splitCollection(v)
			for _, e := range elems {
				cc.elems = insertElem(cc.elems, collElem{key: e, c: wt.cell([]byte{}, now)}, typ.elem.compare)
			}
		case kindMap:
			keys, vals, _ := splitMap(v)
			for i := range keys {
				cc.elems = insertElem(cc.elems, collElem{key: keys[i], c: wt.cell(vals[i], now)}, typ.elem.compare)
			}
		case kindList:
			elems, _ := splitCollection(v)
			if prepend {
				for i := len(elems) - 1; i >= 0; i-- {
					cc.elems = insertElem(cc.elems, collElem{key: listKey(d, true), c: wt.cell(elems[i], now)}, bytes.Compare)
				}
			} else {
				for _, e := range elems {
					cc.elems = insertElem(cc.elems, collElem{key: listKey(d, false), c: wt.cell(e, now)}, bytes.Compare)
				}
			}
		}
	}
	switch op.kind {
	case opSetValue:
		if eo.val.b == nil {
			cc.del = wt.ts
			return nil
		}
		cc.del = wt.ts - 1
		addElems(eo.val.b, false)
	case opAppend:
		if eo.val.b != nil {
			addElems(eo.val.b, false)
		}
	case opPrepend:
		if eo.val.b != nil {
			addElems(eo.val.b, true)
		}
	case opRemove:
		if eo.val.b == nil {
			return nil
		}
		elems, _ := splitCollection(eo.val.b)
		switch typ.kind {
		case kindSet, kindMap:
			for _, e := range elems {
				cc.elems = insertElem(cc.elems, collElem{key: e, c: cell{ts: wt.ts, tomb: true}}, typ.elem.compare)
			}
		case kindList:
			for _, e := range liveElems(cur, slot, now, curDel) {
				for _, v := range elems {
					if typ.elem.compare(e.c.value, v) == 0 {
						cc.elems = insertElem(cc.elems, collElem{key: e.key, c: cell{ts: wt.ts, tomb: true}}, bytes.Compare)
						break
					}
				}
			}
		}
	case opSetElem, opDeleteElem:
		var v []byte
		if op.kind == opSetElem {
			v = eo.val.b
		}
		if typ.kind == kindMap {
			c := cell{ts: wt.ts, tomb: true}
			if v != nil {
				c = wt.cell(v, now)
			}
			cc.elems = insertElem(cc.elems, collElem{key: eo.key.b, c: c}, typ.elem.compare)
			return nil
		}
		idx := decodeSigned(eo.key.b)
		live := liveElems(cur, slot, now, curDel)
		if idx < 0 || idx >= int64(len(live)) {
			return errInvalid("List index %d out of bound, list has size %d", idx, len(live))
		}
		c := cell{ts: wt.ts, tomb: true}
		if v != nil {
			c = wt.cell(v, now)
		}
		cc.elems = insertElem(cc.elems, collElem{key: live[idx].key, c: c}, bytes.Compare)
	case opDeleteCol:
		cc.del = wt.ts
	}
	return nil
}

func insertElem(elems []collElem, e collElem, cmp func(a, b []byte) int) []collElem {
	i := sort.Search(len(elems), func(i int) bool { return cmp(elems[i].key, e.key) >= 0 })
	if i < len(elems) && cmp(elems[i].key, e.key) == 0 {
		elems[i] = e
		return elems
	}
	elems = append(elems, collElem{})
	copy(elems[i+1:], elems[i:])
	elems[i] = e
	return elems
}

func (p *modPlan) execute(x *execCtx) (message.Message, error) {
	targets, err := p.targets(x, nil)
	if err != nil {
		return nil, err
	}
	if p.conditional() {
		return x.db.applyCAS(x, targets, false)
	}
	if err := x.db.applyTargets(targets, int32(x.now.Unix())); err != nil {
		return nil, err
	}
	return &message.VoidResult{}, nil
}

// lockTargets takes the gates and partition locks for a set of targets in
// the canonical order and returns the partition of each target and an
// unlock function.
func lockTargets(targets []*writeTarget) ([]*partition, func()) {
	if len(targets) == 1 {
		wt := targets[0]
		s := wt.table.store
		s.gate.RLock()
		p := s.getOrCreate(wt.key, wt.token)
		p.mu.Lock()
		return []*partition{p}, func() { p.mu.Unlock(); s.gate.RUnlock() }
	}
	// Gates of distinct stores, ordered by table ID.
	var stores []*tableStore
	var storeIDs []string
	seenStore := map[*tableStore]bool{}
	for _, wt := range targets {
		if !seenStore[wt.table.store] {
			seenStore[wt.table.store] = true
			stores = append(stores, wt.table.store)
			storeIDs = append(storeIDs, string(wt.table.id[:]))
		}
	}
	sort.Sort(storesByID{stores, storeIDs})
	for _, s := range stores {
		s.gate.RLock()
	}
	parts := make([]*partition, len(targets))
	type lockItem struct {
		id   string
		part *partition
	}
	var items []lockItem
	seenPart := map[*partition]bool{}
	for i, wt := range targets {
		p := wt.table.store.getOrCreate(wt.key, wt.token)
		parts[i] = p
		if !seenPart[p] {
			seenPart[p] = true
			items = append(items, lockItem{id: string(wt.table.id[:]) + string(wt.key), part: p})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].id < items[j].id })
	for _, it := range items {
		it.part.mu.Lock()
	}
	return parts, func() {
		for i := len(items) - 1; i >= 0; i-- {
			items[i].part.mu.Unlock()
		}
		for i := len(stores) - 1; i >= 0; i-- {
			stores[i].gate.RUnlock()
		}
	}
}

type storesByID struct {
	s   []*tableStore
	ids []string
}

func (x storesByID) Len() int           { return len(x.s) }
func (x storesByID) Less(i, j int) bool { return x.ids[i] < x.ids[j] }
func (x storesByID) Swap(i, j int) {
	x.s[i], x.s[j] = x.s[j], x.s[i]
	x.ids[i], x.ids[j] = x.ids[j], x.ids[i]
}

// applyTargets writes targets atomically: every partition involved is
// locked, the fragments are built, merged and logged as one record.
func (d *db) applyTargets(targets []*writeTarget, now int32) error {
	if len(targets) == 0 {
		return nil
	}
	parts, unlock := lockTargets(targets)
	defer unlock()
	return d.applyLocked(targets, parts, now)
}

func (d *db) applyLocked(targets []*writeTarget, parts []*partition, now int32) error {
	// All fragments are built before any is merged, so that a failing
	// statement (a list index out of bounds) leaves the batch unapplied.
	// Counters read the batch's own earlier increments from the overlay.
	frags := make([]*fragment, len(targets))
	var overlay map[counterKey]cell
	for i, wt := range targets {
		if wt.plan.needsRead && wt.table.counter && len(targets) > 1 && overlay == nil {
			overlay = map[counterKey]cell{}
		}
		f, err := wt.build(d, parts[i], now, overlay)
		if err != nil {
			return err
		}
		frags[i] = f
	}
	for i, wt := range targets {
		wt.table.store.apply(parts[i], frags[i], now, wt.table.elemCompare)
	}
	if d.wal != nil {
		d.wal.appendMutations(targets, frags)
	}
	return nil
}

// counterKey identifies a counter cell within one batch.
type counterKey struct {
	part *partition
	ck   string
	slot int
}

func ckString(ck [][]byte) string {
	var b []byte
	for _, c := range ck {
		b = binary.BigEndian.AppendUint32(b, uint32(len(c)))
		b = append(b, c...)
	}
	return string(b)
}

// elemCompare returns the element key order of the collection in a slot.
func (t *table) elemCompare(slot int) func(a, b []byte) int {
	if slot < len(t.slots) {
		if c := t.slots[slot]; c != nil && c.typ.kind != kindList {
			return c.typ.elem.compare
		}
	}
	return bytes.Compare
}

// applyCAS executes conditional targets (one statement, or a batch whose
// conditions all concern one partition): conditions are checked and the
// writes applied under the partition lock, which makes lightweight
// transactions linearizable.
func (d *db) applyCAS(x *execCtx, targets []*writeTarget, batch bool) (message.Message, error) {
	if len(targets) == 0 {
		return nil, errInvalid("Conditional statement without target")
	}
	first := targets[0]
	for _, wt := range targets[1:] {
		if wt.table.id != first.table.id || !bytes.Equal(wt.key, first.key) {
			return nil, errInvalid("Batch with conditions cannot span multiple partitions")
		}
	}
	now := int32(x.now.Unix())
	parts, unlock := lockTargets(targets)
	defer unlock()
	part := parts[0]
	store := first.table.store

	applied := true
	type failure struct {
		wt *writeTarget
		r  *row
		ck [][]byte
	}
	var failures []failure
	for _, wt := range targets {
		p := wt.plan
		if !p.conditional() {
			continue
		}
		var ck [][]byte
		if len(wt.cks) > 0 {
			ck = wt.cks[0]
		}
		r := part.findRow(ck)
		exists := false
		var del int64 = part.del
		if r != nil {
			del = store.rowDeletion(part, r)
			exists = rowLive(r, now, del)
		}
		ok := true
		switch {
		case p.ifNotExists:
			ok = !exists
		case p.ifExists:
			ok = exists
		default:
			for i := range wt.conds {
				var liveRow *row
				if exists {
					liveRow = r
				}
				if !conditionHolds(&wt.conds[i], liveRow, now, del) {
					ok = false
					break
				}
			}
		}
		if !ok {
			applied = false
			var liveRow *row
			if exists {
				liveRow = r
			}
			failures = append(failures, failure{wt: wt, r: liveRow, ck: ck})
		}
	}
	if applied {
		if err := d.applyLocked(targets, parts, now); err != nil {
			return nil, err
		}
	}

	t := first.table
	meta := []*message.ColumnMetadata{{Keyspace: t.keyspace, Table: t.name, Name: "[applied]", Type: typeBoolean.dataType()}}
	flag := []byte{0}
	if applied {
		flag[0] = 1
	}
	rowOut := [][]byte{flag}
	if !applied {
		// The existing values: every column for IF [NOT] EXISTS, the
		// condition columns otherwise (with the primary key in batches).
		var cols []*column
		var have *failure
		for i := range failures {
			if failures[i].r != nil {
				have = &failures[i]
				break
			}
		}
		if have != nil {
			p := have.wt.plan
			if p.ifNotExists || p.ifExists {
				cols = t.allColumns()
			} else {
				if batch {
					cols = append(cols, t.partitionKey...)
					cols = append(cols, t.clustering...)
				}
				seen := map[*column]bool{}
				for _, c := range cols {
					seen[c] = true
				}
				for _, f := range failures {
					for _, c := range f.wt.plan.condCols {
						if !seen[c] {
							seen[c] = true
							cols = append(cols, c)
						}
					}
				}
			}
			pkVals := splitPartitionKey(first.key, len(t.partitionKey))
			del := store.rowDeletion(part, have.r)
			for _, c := range cols {
				meta = append(meta, &message.ColumnMetadata{Keyspace: t.keyspace, Table: t.name, Name: c.name, Index: int32(len(meta)), Type: c.typ.dataType()})
				rowOut = append(rowOut, columnValue(c, pkVals, have.r, now, del))
			}
		}
	}
	return &message.RowsResult{Metadata: &message.RowsMetadata{ColumnCount: int32(len(meta)), Columns: meta}, Data: [][][]byte{rowOut}}, nil
}

// conditionHolds evaluates an IF condition against the current row (nil
// when the row does not exist: all its columns are null).
func conditionHolds(ec *evaluatedCond, r *row, now int32, del int64) bool {
	cp := ec.c
	var cur []byte
	typ := cp.col.typ
	if r != nil {
		cur = columnValue(cp.col, nil, r, now, del)
	}
	if cp.elem != nil {
		elemType := typ.value
		if cur != nil {
			switch typ.kind {
			case kindMap:
				keys, vals, _ := splitMap(cur)
				var found []byte
				for i, k := range keys {
					if typ.elem.compare(k, ec.elem.b) == 0 {
						found = vals[i]
					}
				}
				cur = found
			case kindList:
				elemType = typ.elem
				elems, _ := splitCollection(cur)
				idx := decodeSigned(ec.elem.b)
				if idx >= 0 && idx < int64(len(elems)) {
					cur = elems[idx]
				} else {
					cur = nil
				}
			}
		}
		if typ.kind == kindList {
			elemType = typ.elem
		}
		typ = elemType
	}
	if cp.in != nil {
		for _, v := range ec.vals {
			if cur != nil && typ.compare(cur, v) == 0 {
				return true
			}
		}
		return false
	}
	want := ec.val.b
	switch cp.op {
	case opEQ:
		if want == nil || cur == nil {
			return want == nil && cur == nil
		}
		return typ.compare(cur, want) == 0
	case opNE:
		if want == nil || cur == nil {
			return (want == nil) != (cur == nil)
		}
		return typ.compare(cur, want) != 0
	}
	if cur == nil {
		return false
	}
	c := typ.compare(cur, want)
	switch cp.op {
	case opLT:
		return c < 0
	case opLE:
		return c <= 0
	case opGT:
		return c > 0
	case opGE:
		return c >= 0
	}
	return false
}

// ---- batches ----

// batchPlan is a compiled BEGIN BATCH ... APPLY BATCH statement.
type batchPlan struct {
	kind      batchKind
	timestamp expr
	children  []*modPlan
}

func (d *db) compileBatch(c *compiled, s *batchStmt) error {
	bp := &batchPlan{kind: s.kind}
	if s.using.timestamp != nil {
		e, err := compileTerm(s.using.timestamp, receiver{name: "[timestamp]", typ: typeBigint}, c.specs)
		if err != nil {
			return err
		}
		bp.timestamp = e
	}
	for _, st := range s.statements {
		var ref tableRef
		switch x := st.(type) {
		case *insertStmt:
			ref = x.table
		case *updateStmt:
			ref = x.table
		case *deleteStmt:
			ref = x.table
		}
		t, err := d.lookupTable(ref, c.keyspace)
		if err != nil {
			return err
		}
		mp, err := compileModPlan(t, st, c.specs)
		if err != nil {
			return err
		}
		c.tables = append(c.tables, t)
		bp.children = append(bp.children, mp)
	}
	if err := checkBatchKind(bp.kind, bp.children); err != nil {
		return err
	}
	c.plan = bp
	return nil
}

func checkBatchKind(kind batchKind, children []*modPlan) error {
	hasCounter, hasOther := false, false
	for _, mp := range children {
		if mp.table.counter {
			hasCounter = true
		} else {
			hasOther = true
		}
	}
	switch {
	case kind == batchCounter && hasOther:
		return errInvalid("Cannot include non-counter statement in a counter batch")
	case kind != batchCounter && hasCounter && hasOther:
		return errInvalid("Counter and non-counter mutations cannot exist in the same batch")
	case kind == batchLogged && hasCounter:
		return errInvalid("Cannot include a counter statement in a logged batch")
	}
	return nil
}

func (bp *batchPlan) execute(x *execCtx) (message.Message, error) {
	var ts *int64
	if bp.timestamp != nil {
		v, err := bp.timestamp.eval(x.bind)
		if err != nil {
			return nil, err
		}
		if v.b != nil && !v.unset {
			t := decodeSigned(v.b)
			ts = &t
		}
	}
	children := make([]batchChild, len(bp.children))
	for i, mp := range bp.children {
		children[i] = batchChild{plan: mp, x: x}
	}
	return x.db.runBatch(x, children, ts)
}

// batchChild is one statement of a batch with its own bound values.
type batchChild struct {
	plan *modPlan
	x    *execCtx
}

// runBatch applies the children atomically, with one timestamp for all of
// them unless they set their own: the batch's USING TIMESTAMP (using), else
// the client's default timestamp, else the server's time. Conditional
// batches always use the server's time, as Cassandra's Paxos does.
func (d *db) runBatch(x *execCtx, children []batchChild, using *int64) (message.Message, error) {
	conditional := false
	for _, ch := range children {
		conditional = conditional || ch.plan.conditional()
	}
	if conditional && using != nil {
		return nil, errInvalid("Cannot provide custom timestamp for conditional BATCH")
	}
	ts := using
	if ts == nil {
		t := d.nowMicros()
		if x.opts.timestamp != nil && !conditional {
			t = *x.opts.timestamp
		}
		ts = &t
	}
	var all []*writeTarget
	for _, ch := range children {
		var childTS *int64 = ts
		if ch.plan.timestamp != nil {
			childTS = nil
		}
		targets, err := ch.plan.targets(ch.x, childTS)
		if err != nil {
			return nil, err
		}
		all = append(all, targets...)
	}
	if conditional {
		return d.applyCAS(x, all, true)
	}
	if err := d.applyTargets(all, int32(x.now.Unix())); err != nil {
		return nil, err
	}
	return &message.VoidResult{}, nil
}
