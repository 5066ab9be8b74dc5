package cqlserver

import (
	"fmt"
	"strings"
)

// parsed is the result of parsing one statement.
type parsed struct {
	stmt    statement
	markers []*bindMarker // in order of appearance
}

// syntaxError is a CQL syntax error; its message mimics Cassandra's ANTLR
// messages ("line 1:9 mismatched input 'FRM' expecting K_FROM (...)").
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

// parseCQL parses a single CQL statement (an optional trailing semicolon is
// allowed). The parser is a plain recursive-descent parser over the token
// list: one method per grammar rule, named after the rule.
func parseCQL(src string) (*parsed, error) {
	toks, err := lex(src)
	if err != nil {
		if le, ok := err.(*lexError); ok {
			return nil, &syntaxError{msg: le.Error()}
		}
		return nil, &syntaxError{msg: err.Error()}
	}
	p := &parser{src: src, toks: toks}
	st, err := p.statement()
	if err != nil {
		return nil, err
	}
	p.accept(";")
	if p.peek().kind != tokEOF {
		return nil, p.errExtraneous()
	}
	return &parsed{stmt: st, markers: p.markers}, nil
}

type parser struct {
	src     string
	toks    []token
	pos     int
	markers []*bindMarker
	depth   int // batch nesting guard
}

// reservedKeywords cannot be used as unquoted identifiers.
var reservedKeywords = map[string]bool{
	"add": true, "allow": true, "alter": true, "and": true, "apply": true, "asc": true,
	"authorize": true, "batch": true, "begin": true, "by": true, "columnfamily": true,
	"create": true, "delete": true, "desc": true, "describe": true, "drop": true,
	"entries": true, "execute": true, "from": true, "full": true, "grant": true, "if": true,
	"in": true, "index": true, "infinity": true, "insert": true, "into": true, "is": true,
	"keyspace": true, "limit": true, "materialized": true, "modify": true, "nan": true,
	"norecursive": true, "not": true, "null": true, "of": true, "on": true, "or": true,
	"order": true, "primary": true, "rename": true, "replace": true, "revoke": true,
	"schema": true, "select": true, "set": true, "table": true, "to": true, "token": true,
	"truncate": true, "unlogged": true, "unset": true, "update": true, "use": true,
	"using": true, "view": true, "where": true, "with": true,
}

func (p *parser) peek() token { return p.toks[p.pos] }

func (p *parser) peekAt(n int) token {
	if p.pos+n < len(p.toks) {
		return p.toks[p.pos+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

// isKeyword reports whether the next token is the (case-insensitive) keyword.
func (p *parser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == tokIdent && strings.EqualFold(t.text, kw)
}

func (p *parser) isKeywordAt(n int, kw string) bool {
	t := p.peekAt(n)
	return t.kind == tokIdent && strings.EqualFold(t.text, kw)
}

func (p *parser) acceptKeyword(kw string) bool {
	if p.isKeyword(kw) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expectKeyword(kw string) error {
	if p.acceptKeyword(kw) {
		return nil
	}
	return p.errMismatched("K_" + strings.ToUpper(kw))
}

func (p *parser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tokPunct && t.text == s
}

func (p *parser) accept(s string) bool {
	if p.isPunct(s) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expect(s string) error {
	if p.accept(s) {
		return nil
	}
	return p.errMismatched("'" + s + "'")
}

// context renders Cassandra's error context: a few tokens before the
// offending one and the offending token in brackets.
func (p *parser) context(at int) string {
	start := at - 2
	if start < 0 {
		start = 0
	}
	t := p.toks[at]
	prefix := strings.TrimSpace(p.src[p.toks[start].off:t.off])
	if prefix != "" {
		prefix += " "
	}
	return fmt.Sprintf(" (%s[%s]...)", prefix, t.String())
}

func (p *parser) errMismatched(expecting string) error {
	t := p.peek()
	return &syntaxError{msg: fmt.Sprintf("line %d:%d mismatched input '%s' expecting %s%s", t.line, t.col, t.String(), expecting, p.context(p.pos))}
}

func (p *parser) errNoViable() error {
	t := p.peek()
	return &syntaxError{msg: fmt.Sprintf("line %d:%d no viable alternative at input '%s'%s", t.line, t.col, t.String(), p.context(p.pos))}
}

func (p *parser) errExtraneous() error {
	t := p.peek()
	return &syntaxError{msg: fmt.Sprintf("line %d:%d extraneous input '%s' expecting <EOF>%s", t.line, t.col, t.String(), p.context(p.pos))}
}

// ident parses an identifier: unquoted ones are folded to lower case and
// may not be reserved keywords.
func (p *parser) ident() (string, error) {
	t := p.peek()
	switch t.kind {
	case tokIdent:
		if reservedKeywords[strings.ToLower(t.text)] {
			return "", p.errNoViable()
		}
		p.pos++
		return strings.ToLower(t.text), nil
	case tokQuotedIdent:
		p.pos++
		return t.text, nil
	}
	return "", p.errNoViable()
}

// tableRef parses [keyspace.]table.
func (p *parser) tableRef() (tableRef, error) {
	name, err := p.ident()
	if err != nil {
		return tableRef{}, err
	}
	if p.accept(".") {
		tbl, err := p.ident()
		if err != nil {
			return tableRef{}, err
		}
		return tableRef{keyspace: name, name: tbl}, nil
	}
	return tableRef{name: name}, nil
}

func (p *parser) statement() (statement, error) {
	t := p.peek()
	if t.kind != tokIdent {
		return nil, p.errNoViable()
	}
	switch strings.ToLower(t.text) {
	case "select":
		return p.selectStatement()
	case "insert":
		return p.insertStatement()
	case "update":
		return p.updateStatement()
	case "delete":
		return p.deleteStatement()
	case "begin":
		return p.batchStatement()
	case "create":
		return p.createStatement()
	case "alter":
		return p.alterStatement()
	case "drop":
		return p.dropStatement()
	case "truncate":
		p.next()
		p.acceptKeyword("table")
		tbl, err := p.tableRef()
		if err != nil {
			return nil, err
		}
		return &truncateStmt{table: tbl}, nil
	case "use":
		p.next()
		ks, err := p.ident()
		if err != nil {
			return nil, err
		}
		return &useStmt{keyspace: ks}, nil
	case "grant", "revoke", "list":
		return &unsupportedStmt{what: strings.ToUpper(t.text)}, p.skipRest()
	}
	return nil, p.errNoViable()
}

// skipRest consumes the remaining tokens of a recognised but unsupported
// statement.
func (p *parser) skipRest() error {
	for p.peek().kind != tokEOF && !p.isPunct(";") {
		p.next()
	}
	return nil
}

// ---- SELECT ----

func (p *parser) selectStatement() (statement, error) {
	p.next() // SELECT
	s := &selectStmt{}
	if p.isKeyword("json") && !p.isPunctAt(1, ",") && !p.isKeywordAt(1, "from") {
		return &unsupportedStmt{what: "SELECT JSON"}, p.skipRest()
	}
	if p.isKeyword("distinct") && !p.isPunctAt(1, ",") && !p.isKeywordAt(1, "from") {
		p.next()
		s.distinct = true
	}
	if !p.accept("*") {
		if err := commaList(p, &s.selectors, p.selector); err != nil {
			return nil, err
		}
	}
	if err := p.expectKeyword("from"); err != nil {
		return nil, err
	}
	var err error
	if s.table, err = p.tableRef(); err != nil {
		return nil, err
	}
	if p.acceptKeyword("where") {
		if s.where, err = p.whereClause(); err != nil {
			return nil, err
		}
	}
	if p.isKeyword("group") {
		return &unsupportedStmt{what: "GROUP BY"}, p.skipRest()
	}
	if p.acceptKeyword("order") {
		if err := p.expectKeyword("by"); err != nil {
			return nil, err
		}
		for {
			col, err := p.ident()
			if err != nil {
				return nil, err
			}
			o := ordering{column: col}
			if p.acceptKeyword("desc") {
				o.desc = true
			} else {
				p.acceptKeyword("asc")
			}
			s.orderBy = append(s.orderBy, o)
			if !p.accept(",") {
				break
			}
		}
	}
	if p.isKeyword("per") {
		p.next()
		if err := p.expectKeyword("partition"); err != nil {
			return nil, err
		}
		if err := p.expectKeyword("limit"); err != nil {
			return nil, err
		}
		if s.perPartitionLimit, err = p.intOrMarker(); err != nil {
			return nil, err
		}
	}
	if p.acceptKeyword("limit") {
		if s.limit, err = p.intOrMarker(); err != nil {
			return nil, err
		}
	}
	if p.acceptKeyword("allow") {
		if err := p.expectKeyword("filtering"); err != nil {
			return nil, err
		}
		s.allowFiltering = true
	}
	return s, nil
}

func (p *parser) isPunctAt(n int, s string) bool {
	t := p.peekAt(n)
	return t.kind == tokPunct && t.text == s
}

func (p *parser) intOrMarker() (term, error) {
	t := p.peek()
	if t.kind == tokInteger {
		p.next()
		return &literal{kind: litInteger, text: t.text}, nil
	}
	if m, ok, err := p.marker(); ok || err != nil {
		return m, err
	}
	return nil, p.errMismatched("INTEGER")
}

func (p *parser) selector() (selector, error) {
	expr, err := p.selectorExpr()
	if err != nil {
		return selector{}, err
	}
	sel := selector{expr: expr}
	if p.acceptKeyword("as") {
		if sel.alias, err = p.ident(); err != nil {
			return selector{}, err
		}
	}
	return sel, nil
}

func (p *parser) selectorExpr() (selectorExpr, error) {
	t := p.peek()
	if t.kind == tokIdent && p.isPunctAt(1, "(") {
		name := strings.ToLower(t.text)
		p.pos += 2
		call := &selCall{name: name}
		if p.accept("*") {
			call.star = true
		} else if !p.isPunct(")") {
			if err := commaList(p, &call.args, p.selectorExpr); err != nil {
				return nil, err
			}
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return call, nil
	}
	switch t.kind {
	case tokInteger, tokFloat, tokString, tokUUID, tokHex:
		lit, err := p.term()
		if err != nil {
			return nil, err
		}
		return &selTerm{t: lit}, nil
	}
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	return &selColumn{name: name}, nil
}

// whereClause parses relation (AND relation)*.
func (p *parser) whereClause() ([]relation, error) {
	var rels []relation
	if err := andList(p, &rels, p.relation); err != nil {
		return nil, err
	}
	return rels, nil
}

func (p *parser) relationOp() (string, error) {
	t := p.peek()
	if t.kind == tokPunct {
		switch t.text {
		case "=", "<", "<=", ">", ">=", "!=":
			p.next()
			return t.text, nil
		}
	}
	if p.acceptKeyword("in") {
		return opIN, nil
	}
	if p.acceptKeyword("contains") {
		if p.acceptKeyword("key") {
			return opContainsKey, nil
		}
		return opContains, nil
	}
	if p.isKeyword("like") {
		p.next()
		return "LIKE", nil
	}
	return "", p.errNoViable()
}

func (p *parser) relation() (relation, error) {
	r := relation{pos: p.peek()}
	switch {
	case p.isKeyword("token") && p.isPunctAt(1, "("):
		p.pos += 2
		r.lhs = lhsToken
		cols, err := p.identList()
		if err != nil {
			return r, err
		}
		r.columns = cols
	case p.isPunct("("):
		p.next()
		r.lhs = lhsTuple
		cols, err := p.identList()
		if err != nil {
			return r, err
		}
		r.columns = cols
	default:
		col, err := p.ident()
		if err != nil {
			return r, err
		}
		r.lhs = lhsColumn
		r.columns = []string{col}
		if p.isPunct("[") {
			return r, &syntaxError{msg: fmt.Sprintf("line %d:%d map element restrictions are not supported", r.pos.line, r.pos.col)}
		}
	}
	op, err := p.relationOp()
	if err != nil {
		return r, err
	}
	r.op = op
	if op == opIN {
		if m, ok, err := p.marker(); ok || err != nil {
			r.value = m
			return r, err
		}
		if err := p.expect("("); err != nil {
			return r, err
		}
		if !p.isPunct(")") {
			if err := commaList(p, &r.in, p.term); err != nil {
				return r, err
			}
		}
		return r, p.expect(")")
	}
	if r.value, err = p.term(); err != nil {
		return r, err
	}
	return r, nil
}

// identList parses ident (, ident)* ) — the opening parenthesis is consumed
// by the caller.
func (p *parser) identList() ([]string, error) {
	var out []string
	if err := commaList(p, &out, p.ident); err != nil {
		return nil, err
	}
	return out, p.expect(")")
}

// ---- terms ----

// marker parses ? or :name if present.
func (p *parser) marker() (term, bool, error) {
	if p.peek().kind == tokQMark {
		p.next()
		m := &bindMarker{index: len(p.markers)}
		p.markers = append(p.markers, m)
		return m, true, nil
	}
	if p.isPunct(":") && (p.peekAt(1).kind == tokIdent || p.peekAt(1).kind == tokQuotedIdent) {
		p.next()
		name, err := p.ident()
		if err != nil {
			return nil, true, err
		}
		m := &bindMarker{index: len(p.markers), name: name}
		p.markers = append(p.markers, m)
		return m, true, nil
	}
	return nil, false, nil
}

func (p *parser) term() (term, error) {
	if m, ok, err := p.marker(); ok || err != nil {
		return m, err
	}
	t := p.peek()
	switch t.kind {
	case tokString:
		p.next()
		return &literal{kind: litString, text: t.text}, nil
	case tokInteger:
		p.next()
		return &literal{kind: litInteger, text: t.text}, nil
	case tokFloat:
		p.next()
		return &literal{kind: litFloat, text: t.text}, nil
	case tokUUID:
		p.next()
		return &literal{kind: litUUID, text: t.text}, nil
	case tokHex:
		p.next()
		return &literal{kind: litHex, text: t.text}, nil
	case tokIdent:
		switch strings.ToLower(t.text) {
		case "true", "false":
			p.next()
			return &literal{kind: litBool, text: strings.ToLower(t.text)}, nil
		case "null":
			p.next()
			return &literal{kind: litNull}, nil
		case "nan":
			p.next()
			return &literal{kind: litFloat, text: "NaN"}, nil
		case "infinity":
			p.next()
			return &literal{kind: litFloat, text: "Infinity"}, nil
		}
		if p.isPunctAt(1, "(") {
			return p.functionCall()
		}
	case tokPunct:
		switch t.text {
		case "-":
			if p.isKeywordAt(1, "nan") || p.isKeywordAt(1, "infinity") {
				p.pos += 2
				return &literal{kind: litFloat, text: "-" + p.toks[p.pos-1].text}, nil
			}
		case "[":
			return p.listLiteral()
		case "{":
			return p.braceLiteral()
		case "(":
			p.next()
			tl := &tupleLiteral{}
			if err := commaList(p, &tl.elems, p.term); err != nil {
				return nil, err
			}
			return tl, p.expect(")")
		}
	}
	return nil, p.errNoViable()
}

func (p *parser) functionCall() (term, error) {
	name := strings.ToLower(p.next().text)
	p.next() // (
	fc := &functionCall{name: name}
	if !p.isPunct(")") {
		if err := commaList(p, &fc.args, p.term); err != nil {
			return nil, err
		}
	}
	return fc, p.expect(")")
}

func (p *parser) listLiteral() (term, error) {
	p.next() // [
	cl := &collectionLiteral{kind: collList}
	if p.accept("]") {
		return cl, nil
	}
	if err := commaList(p, &cl.elems, p.term); err != nil {
		return nil, err
	}
	return cl, p.expect("]")
}

func (p *parser) braceLiteral() (term, error) {
	p.next() // {
	if p.accept("}") {
		return &collectionLiteral{kind: collEmptyBraces}, nil
	}
	first, err := p.term()
	if err != nil {
		return nil, err
	}
	if p.accept(":") {
		cl := &collectionLiteral{kind: collMap}
		v, err := p.term()
		if err != nil {
			return nil, err
		}
		cl.elems, cl.values = append(cl.elems, first), append(cl.values, v)
		for p.accept(",") {
			k, err := p.term()
			if err != nil {
				return nil, err
			}
			if err := p.expect(":"); err != nil {
				return nil, err
			}
			v, err := p.term()
			if err != nil {
				return nil, err
			}
			cl.elems, cl.values = append(cl.elems, k), append(cl.values, v)
		}
		return cl, p.expect("}")
	}
	cl := &collectionLiteral{kind: collSet, elems: []term{first}}
	for p.accept(",") {
		e, err := p.term()
		if err != nil {
			return nil, err
		}
		cl.elems = append(cl.elems, e)
	}
	return cl, p.expect("}")
}

// ---- INSERT / UPDATE / DELETE / BATCH ----

func (p *parser) usingClause(u *usingClause, allowTTL bool) error {
	if !p.acceptKeyword("using") {
		return nil
	}
	for {
		switch {
		case allowTTL && p.acceptKeyword("ttl"):
			v, err := p.intOrMarker()
			if err != nil {
				return err
			}
			u.ttl = v
		case p.acceptKeyword("timestamp"):
			v, err := p.intOrMarker()
			if err != nil {
				return err
			}
			u.timestamp = v
		default:
			return p.errMismatched("K_TIMESTAMP")
		}
		if !p.acceptKeyword("and") {
			return nil
		}
	}
}

func (p *parser) insertStatement() (statement, error) {
	p.next() // INSERT
	if err := p.expectKeyword("into"); err != nil {
		return nil, err
	}
	tbl, err := p.tableRef()
	if err != nil {
		return nil, err
	}
	if p.isKeyword("json") {
		return &unsupportedStmt{what: "INSERT JSON"}, p.skipRest()
	}
	s := &insertStmt{table: tbl}
	if err := p.expect("("); err != nil {
		return nil, err
	}
	if s.columns, err = p.identList(); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("values"); err != nil {
		return nil, err
	}
	if err := p.expect("("); err != nil {
		return nil, err
	}
	if err := commaList(p, &s.values, p.term); err != nil {
		return nil, err
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if p.acceptKeyword("if") {
		if err := p.expectKeyword("not"); err != nil {
			return nil, err
		}
		if err := p.expectKeyword("exists"); err != nil {
			return nil, err
		}
		s.ifNotExists = true
	}
	if err := p.usingClause(&s.using, true); err != nil {
		return nil, err
	}
	return s, nil
}

func (p *parser) updateStatement() (statement, error) {
	p.next() // UPDATE
	tbl, err := p.tableRef()
	if err != nil {
		return nil, err
	}
	s := &updateStmt{table: tbl}
	if err := p.usingClause(&s.using, true); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("set"); err != nil {
		return nil, err
	}
	if err := commaList(p, &s.assignments, p.assignment); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("where"); err != nil {
		return nil, err
	}
	if s.where, err = p.whereClause(); err != nil {
		return nil, err
	}
	if s.ifExists, s.conditions, err = p.ifClause(); err != nil {
		return nil, err
	}
	return s, nil
}

func (p *parser) assignment() (assignment, error) {
	col, err := p.ident()
	if err != nil {
		return assignment{}, err
	}
	a := assignment{column: col}
	switch {
	case p.accept("["):
		if a.key, err = p.term(); err != nil {
			return a, err
		}
		if err := p.expect("]"); err != nil {
			return a, err
		}
		if err := p.expect("="); err != nil {
			return a, err
		}
		a.op = assignSetElement
		a.value, err = p.term()
		return a, err
	case p.accept("+="):
		a.op = assignAdd
		a.value, err = p.term()
		return a, err
	case p.accept("-="):
		a.op = assignSub
		a.value, err = p.term()
		return a, err
	}
	if err := p.expect("="); err != nil {
		return a, err
	}
	// c = c -1 lexes as [c, =, c, INTEGER(-1)].
	if t := p.peek(); (t.kind == tokIdent || t.kind == tokQuotedIdent) && p.peekAt(1).kind == tokInteger && strings.HasPrefix(p.peekAt(1).text, "-") {
		name := t.text
		if t.kind == tokIdent {
			name = strings.ToLower(name)
		}
		if name != col {
			return a, &syntaxError{msg: fmt.Sprintf("line %d:%d Only expressions of the form X = X - <value> are supported.", t.line, t.col)}
		}
		p.next()
		n := p.next()
		a.op, a.value = assignSub, &literal{kind: litInteger, text: n.text[1:]}
		return a, nil
	}
	// c = c + v / c = c - v
	if t := p.peek(); (t.kind == tokIdent || t.kind == tokQuotedIdent) && (p.isPunctAt(1, "+") || p.isPunctAt(1, "-")) {
		name := t.text
		if t.kind == tokIdent {
			name = strings.ToLower(name)
		}
		if name != col {
			return a, &syntaxError{msg: fmt.Sprintf("line %d:%d Only expressions of the form X = X +/- <value> are supported.", t.line, t.col)}
		}
		p.next()
		if p.next().text == "+" {
			a.op = assignAdd
		} else {
			a.op = assignSub
		}
		a.value, err = p.term()
		return a, err
	}
	if a.value, err = p.term(); err != nil {
		return a, err
	}
	a.op = assignSet
	if p.accept("+") {
		t := p.peek()
		name, err := p.ident()
		if err != nil {
			return a, err
		}
		if name != col {
			return a, &syntaxError{msg: fmt.Sprintf("line %d:%d Only expressions of the form X = <value> + X are supported.", t.line, t.col)}
		}
		a.op = assignPrepend
	}
	return a, nil
}

// ifClause parses IF EXISTS or IF cond (AND cond)*.
func (p *parser) ifClause() (ifExists bool, conds []condition, err error) {
	if !p.acceptKeyword("if") {
		return false, nil, nil
	}
	if p.acceptKeyword("exists") {
		return true, nil, nil
	}
	for {
		col, err := p.ident()
		if err != nil {
			return false, nil, err
		}
		c := condition{column: col}
		if p.accept("[") {
			if c.elem, err = p.term(); err != nil {
				return false, nil, err
			}
			if err := p.expect("]"); err != nil {
				return false, nil, err
			}
		}
		if c.op, err = p.relationOp(); err != nil {
			return false, nil, err
		}
		if c.op == opIN {
			if m, ok, err := p.marker(); ok || err != nil {
				c.value = m
				if err != nil {
					return false, nil, err
				}
			} else {
				if err := p.expect("("); err != nil {
					return false, nil, err
				}
				for !p.isPunct(")") {
					v, err := p.term()
					if err != nil {
						return false, nil, err
					}
					c.in = append(c.in, v)
					if !p.accept(",") {
						break
					}
				}
				if err := p.expect(")"); err != nil {
					return false, nil, err
				}
			}
		} else if c.value, err = p.term(); err != nil {
			return false, nil, err
		}
		conds = append(conds, c)
		if !p.acceptKeyword("and") {
			return false, conds, nil
		}
	}
}

func (p *parser) deleteStatement() (statement, error) {
	p.next() // DELETE
	s := &deleteStmt{}
	if !p.isKeyword("from") {
		for {
			col, err := p.ident()
			if err != nil {
				return nil, err
			}
			tg := deleteTarget{column: col}
			if p.accept("[") {
				if tg.elem, err = p.term(); err != nil {
					return nil, err
				}
				if err := p.expect("]"); err != nil {
					return nil, err
				}
			}
			s.targets = append(s.targets, tg)
			if !p.accept(",") {
				break
			}
		}
	}
	if err := p.expectKeyword("from"); err != nil {
		return nil, err
	}
	var err error
	if s.table, err = p.tableRef(); err != nil {
		return nil, err
	}
	if err := p.usingClause(&s.using, false); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("where"); err != nil {
		return nil, err
	}
	if s.where, err = p.whereClause(); err != nil {
		return nil, err
	}
	if s.ifExists, s.conditions, err = p.ifClause(); err != nil {
		return nil, err
	}
	return s, nil
}

func (p *parser) batchStatement() (statement, error) {
	p.next() // BEGIN
	s := &batchStmt{}
	switch {
	case p.acceptKeyword("unlogged"):
		s.kind = batchUnlogged
	case p.acceptKeyword("counter"):
		s.kind = batchCounter
	case p.acceptKeyword("logged"):
	}
	if err := p.expectKeyword("batch"); err != nil {
		return nil, err
	}
	if err := p.usingClause(&s.using, false); err != nil {
		return nil, err
	}
	for !p.isKeyword("apply") {
		var (
			st  statement
			err error
		)
		switch {
		case p.isKeyword("insert"):
			st, err = p.insertStatement()
		case p.isKeyword("update"):
			st, err = p.updateStatement()
		case p.isKeyword("delete"):
			st, err = p.deleteStatement()
		default:
			return nil, p.errMismatched("K_APPLY")
		}
		if err != nil {
			return nil, err
		}
		if _, ok := st.(*unsupportedStmt); ok {
			return st, nil
		}
		s.statements = append(s.statements, st)
		p.accept(";")
	}
	p.next() // APPLY
	if err := p.expectKeyword("batch"); err != nil {
		return nil, err
	}
	return s, nil
}

// ---- DDL ----

func (p *parser) ifNotExists() (bool, error) {
	if !p.acceptKeyword("if") {
		return false, nil
	}
	if err := p.expectKeyword("not"); err != nil {
		return false, err
	}
	return true, p.expectKeyword("exists")
}

func (p *parser) ifExists() (bool, error) {
	if !p.acceptKeyword("if") {
		return false, nil
	}
	return true, p.expectKeyword("exists")
}

func (p *parser) createStatement() (statement, error) {
	p.next() // CREATE
	switch {
	case p.acceptKeyword("keyspace"), p.acceptKeyword("schema"):
		ine, err := p.ifNotExists()
		if err != nil {
			return nil, err
		}
		name, err := p.ident()
		if err != nil {
			return nil, err
		}
		if err := p.expectKeyword("with"); err != nil {
			return nil, err
		}
		props, err := p.properties()
		if err != nil {
			return nil, err
		}
		return &createKeyspaceStmt{name: name, ifNotExists: ine, props: props}, nil
	case p.acceptKeyword("table"), p.acceptKeyword("columnfamily"):
		return p.createTable()
	}
	t := p.peek()
	if t.kind == tokIdent {
		switch strings.ToLower(t.text) {
		case "index", "custom", "type", "materialized", "function", "aggregate", "role", "user", "trigger", "or":
			return &unsupportedStmt{what: "CREATE " + strings.ToUpper(t.text)}, p.skipRest()
		}
	}
	return nil, p.errNoViable()
}

func (p *parser) createTable() (statement, error) {
	s := &createTableStmt{}
	var err error
	if s.ifNotExists, err = p.ifNotExists(); err != nil {
		return nil, err
	}
	if s.table, err = p.tableRef(); err != nil {
		return nil, err
	}
	if err := p.expect("("); err != nil {
		return nil, err
	}
	for {
		if p.isKeyword("primary") {
			p.next()
			if err := p.expectKeyword("key"); err != nil {
				return nil, err
			}
			if s.partitionKey != nil {
				return nil, &syntaxError{msg: "Multiple PRIMARY KEYs specified (exactly one required)"}
			}
			if err := p.expect("("); err != nil {
				return nil, err
			}
			if p.accept("(") {
				if s.partitionKey, err = p.identList(); err != nil {
					return nil, err
				}
			} else {
				c, err := p.ident()
				if err != nil {
					return nil, err
				}
				s.partitionKey = []string{c}
			}
			for p.accept(",") {
				c, err := p.ident()
				if err != nil {
					return nil, err
				}
				s.clustering = append(s.clustering, c)
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
		} else {
			name, err := p.ident()
			if err != nil {
				return nil, err
			}
			typ, err := p.cqlType()
			if err != nil {
				return nil, err
			}
			cd := columnDef{name: name, typ: typ}
			if p.acceptKeyword("static") {
				cd.static = true
			}
			if p.isKeyword("primary") {
				p.next()
				if err := p.expectKeyword("key"); err != nil {
					return nil, err
				}
				if s.partitionKey != nil {
					return nil, &syntaxError{msg: "Multiple PRIMARY KEYs specified (exactly one required)"}
				}
				s.partitionKey = []string{name}
			}
			s.columns = append(s.columns, cd)
		}
		if !p.accept(",") {
			break
		}
		if p.isPunct(")") { // trailing comma is accepted by Cassandra
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if p.acceptKeyword("with") {
		for {
			switch {
			case p.isKeyword("clustering"):
				p.next()
				if err := p.expectKeyword("order"); err != nil {
					return nil, err
				}
				if err := p.expectKeyword("by"); err != nil {
					return nil, err
				}
				if err := p.expect("("); err != nil {
					return nil, err
				}
				for {
					c, err := p.ident()
					if err != nil {
						return nil, err
					}
					o := ordering{column: c}
					if p.acceptKeyword("desc") {
						o.desc = true
					} else if !p.acceptKeyword("asc") {
						return nil, p.errMismatched("K_ASC")
					}
					s.clusteringOrder = append(s.clusteringOrder, o)
					if !p.accept(",") {
						break
					}
				}
				if err := p.expect(")"); err != nil {
					return nil, err
				}
			case p.isKeyword("compact"):
				p.next()
				if err := p.expectKeyword("storage"); err != nil {
					return nil, err
				}
				s.compactStorage = true
			default:
				prop, err := p.property()
				if err != nil {
					return nil, err
				}
				s.props = append(s.props, prop)
			}
			if !p.acceptKeyword("and") {
				break
			}
		}
	}
	return s, nil
}

// cqlType parses a type: a primitive name, or a collection or frozen type.
func (p *parser) cqlType() (*cqlType, error) {
	return p.cqlTypeFrozen(false)
}

func (p *parser) cqlTypeFrozen(frozen bool) (*cqlType, error) {
	t := p.peek()
	if t.kind != tokIdent {
		return nil, p.errNoViable()
	}
	name := strings.ToLower(t.text)
	switch name {
	case "frozen":
		p.next()
		if err := p.expect("<"); err != nil {
			return nil, err
		}
		inner, err := p.cqlTypeFrozen(true)
		if err != nil {
			return nil, err
		}
		return inner, p.expect(">")
	case "list", "set", "map":
		p.next()
		if err := p.expect("<"); err != nil {
			return nil, err
		}
		// Everything inside a frozen type is frozen.
		elem, err := p.cqlTypeFrozen(frozen)
		if err != nil {
			return nil, err
		}
		if elem.isMultiCell() {
			return nil, &syntaxError{msg: fmt.Sprintf("line %d:%d Non-frozen collections are not allowed inside collections: %s", t.line, t.col, name)}
		}
		var typ *cqlType
		switch name {
		case "list":
			typ = listOf(elem, frozen)
		case "set":
			typ = setOf(elem, frozen)
		default:
			if err := p.expect(","); err != nil {
				return nil, err
			}
			val, err := p.cqlTypeFrozen(frozen)
			if err != nil {
				return nil, err
			}
			if val.isMultiCell() {
				return nil, &syntaxError{msg: fmt.Sprintf("line %d:%d Non-frozen collections are not allowed inside collections: map", t.line, t.col)}
			}
			typ = mapOf(elem, val, frozen)
		}
		return typ, p.expect(">")
	}
	if typ, ok := primitiveTypes[name]; ok {
		p.next()
		return typ, nil
	}
	return nil, &syntaxError{msg: fmt.Sprintf("line %d:%d Unknown type %s", t.line, t.col, t.text)}
}

// properties parses prop (AND prop)*.
func (p *parser) properties() ([]property, error) {
	var props []property
	if err := andList(p, &props, p.property); err != nil {
		return nil, err
	}
	return props, nil
}

func (p *parser) property() (property, error) {
	t := p.peek()
	if t.kind != tokIdent && t.kind != tokQuotedIdent {
		return property{}, p.errNoViable()
	}
	p.next()
	name := strings.ToLower(t.text)
	if err := p.expect("="); err != nil {
		return property{}, err
	}
	// Property values are constants or maps; bare identifiers are accepted
	// as strings (e.g. speculative_retry = NONE in old schemas).
	if v := p.peek(); v.kind == tokIdent && !p.isPunctAt(1, "(") {
		switch strings.ToLower(v.text) {
		case "true", "false", "null", "nan", "infinity":
		default:
			p.next()
			return property{name: name, value: &literal{kind: litString, text: v.text}}, nil
		}
	}
	val, err := p.term()
	if err != nil {
		return property{}, err
	}
	return property{name: name, value: val}, nil
}

func (p *parser) alterStatement() (statement, error) {
	p.next() // ALTER
	switch {
	case p.acceptKeyword("keyspace"), p.acceptKeyword("schema"):
		name, err := p.ident()
		if err != nil {
			return nil, err
		}
		if err := p.expectKeyword("with"); err != nil {
			return nil, err
		}
		props, err := p.properties()
		if err != nil {
			return nil, err
		}
		return &alterKeyspaceStmt{name: name, props: props}, nil
	case p.acceptKeyword("table"), p.acceptKeyword("columnfamily"):
	default:
		t := p.peek()
		if t.kind == tokIdent {
			return &unsupportedStmt{what: "ALTER " + strings.ToUpper(t.text)}, p.skipRest()
		}
		return nil, p.errNoViable()
	}
	tbl, err := p.tableRef()
	if err != nil {
		return nil, err
	}
	s := &alterTableStmt{table: tbl}
	switch {
	case p.acceptKeyword("add"):
		paren := p.accept("(")
		for {
			name, err := p.ident()
			if err != nil {
				return nil, err
			}
			typ, err := p.cqlType()
			if err != nil {
				return nil, err
			}
			cd := columnDef{name: name, typ: typ}
			if p.acceptKeyword("static") {
				cd.static = true
			}
			s.add = append(s.add, cd)
			if !paren || !p.accept(",") {
				break
			}
		}
		if paren {
			if err := p.expect(")"); err != nil {
				return nil, err
			}
		}
	case p.acceptKeyword("drop"):
		if p.accept("(") {
			if s.drop, err = p.identList(); err != nil {
				return nil, err
			}
		} else {
			c, err := p.ident()
			if err != nil {
				return nil, err
			}
			s.drop = []string{c}
		}
	case p.acceptKeyword("with"):
		if s.props, err = p.properties(); err != nil {
			return nil, err
		}
	default:
		t := p.peek()
		if t.kind == tokIdent {
			return &unsupportedStmt{what: "ALTER TABLE " + strings.ToUpper(t.text)}, p.skipRest()
		}
		return nil, p.errNoViable()
	}
	return s, nil
}

func (p *parser) dropStatement() (statement, error) {
	p.next() // DROP
	switch {
	case p.acceptKeyword("keyspace"), p.acceptKeyword("schema"):
		ie, err := p.ifExists()
		if err != nil {
			return nil, err
		}
		name, err := p.ident()
		if err != nil {
			return nil, err
		}
		return &dropKeyspaceStmt{name: name, ifExists: ie}, nil
	case p.acceptKeyword("table"), p.acceptKeyword("columnfamily"):
		ie, err := p.ifExists()
		if err != nil {
			return nil, err
		}
		tbl, err := p.tableRef()
		if err != nil {
			return nil, err
		}
		return &dropTableStmt{table: tbl, ifExists: ie}, nil
	}
	t := p.peek()
	if t.kind == tokIdent {
		return &unsupportedStmt{what: "DROP " + strings.ToUpper(t.text)}, p.skipRest()
	}
	return nil, p.errNoViable()
}

// commaList parses one or more items separated by commas, appending them to
// dst.
func commaList[T any](p *parser, dst *[]T, item func() (T, error)) error {
	return separatedList(dst, item, func() bool { return p.accept(",") })
}

// andList parses one or more items separated by the keyword AND, appending
// them to dst.
func andList[T any](p *parser, dst *[]T, item func() (T, error)) error {
	return separatedList(dst, item, func() bool { return p.acceptKeyword("and") })
}

// separatedList parses item, then another each time separator accepts one.
func separatedList[T any](dst *[]T, item func() (T, error), separator func() bool) error {
	for {
		v, err := item()
		if err != nil {
			return err
		}
		*dst = append(*dst, v)
		if !separator() {
			return nil
		}
	}
}
