package cqlserver

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/primitive"
	"github.com/google/uuid"
)

// value is an evaluated term: a serialized value, null (b == nil), or
// "unset" (a protocol v4 unset bound value, which leaves a column alone).
type value struct {
	b     []byte
	unset bool
}

// bindings are the bound values of one execution.
type bindings struct {
	values []*primitive.Value
	now    time.Time
}

// receiver describes what a term is assigned or compared to; for bind
// markers it becomes the variable metadata of a prepared statement.
type receiver struct {
	name     string
	typ      *cqlType
	keyspace string
	table    string
}

// expr is a compiled term that yields a value of its receiver's type.
type expr interface {
	eval(b *bindings) (value, error)
}

type constExpr struct{ v []byte }

func (e constExpr) eval(*bindings) (value, error) { return value{b: e.v}, nil }

// markerExpr reads a bound value and validates it against its receiver.
type markerExpr struct {
	index int
	recv  receiver
}

func (e *markerExpr) eval(b *bindings) (value, error) {
	if e.index >= len(b.values) {
		return value{}, errInvalid("There were %d markers(?) in CQL but %d bound variables", e.index+1, len(b.values))
	}
	v := b.values[e.index]
	if v == nil {
		return value{}, nil
	}
	switch v.Type {
	case primitive.ValueTypeNull:
		return value{}, nil
	case primitive.ValueTypeUnset:
		return value{unset: true}, nil
	}
	contents := v.Contents
	if contents == nil {
		contents = []byte{}
	}
	if err := e.recv.typ.validate(contents); err != nil {
		return value{}, errInvalid("%s", err.Error())
	}
	if e.recv.typ.isCollection() {
		contents = e.recv.typ.normalize(contents)
	}
	return value{b: contents}, nil
}

// collectionExpr builds a collection from element expressions.
type collectionExpr struct {
	typ    *cqlType
	elems  []expr
	values []expr // map values
}

func (e *collectionExpr) eval(b *bindings) (value, error) {
	elems := make([][]byte, len(e.elems))
	for i, x := range e.elems {
		v, err := x.eval(b)
		if err != nil {
			return value{}, err
		}
		if v.b == nil {
			return value{}, errInvalid("null is not supported inside collections")
		}
		elems[i] = v.b
	}
	if e.typ.kind == kindMap {
		vals := make([][]byte, len(e.values))
		for i, x := range e.values {
			v, err := x.eval(b)
			if err != nil {
				return value{}, err
			}
			if v.b == nil {
				return value{}, errInvalid("null is not supported inside collections")
			}
			vals[i] = v.b
		}
		return value{b: e.typ.normalize(joinMap(elems, vals))}, nil
	}
	return value{b: e.typ.normalize(joinCollection(elems))}, nil
}

// funcExpr evaluates a built-in function.
type funcExpr struct {
	name string
	args []expr
	typ  *cqlType
}

func (e *funcExpr) eval(b *bindings) (value, error) {
	switch e.name {
	case "now":
		u, err := uuid.NewUUID()
		if err != nil {
			return value{}, err
		}
		return value{b: u[:]}, nil
	case "uuid":
		u := uuid.New()
		return value{b: u[:]}, nil
	case "currenttimestamp":
		return value{b: int64Bytes(b.now.UnixMilli())}, nil
	case "currentdate":
		return value{b: dateBytes(b.now)}, nil
	case "currenttime":
		y, m, d := b.now.UTC().Date()
		return value{b: int64Bytes(b.now.UTC().Sub(time.Date(y, m, d, 0, 0, 0, 0, time.UTC)).Nanoseconds())}, nil
	case "currenttimeuuid":
		u, err := uuid.NewUUID()
		if err != nil {
			return value{}, err
		}
		return value{b: u[:]}, nil
	}
	// One-argument conversions.
	arg, err := e.args[0].eval(b)
	if err != nil || arg.b == nil {
		return arg, err
	}
	switch e.name {
	case "totimestamp", "tounixtimestamp", "todate":
		var t time.Time
		switch {
		case len(arg.b) == 16:
			t = timeUUIDTime(arg.b)
		case len(arg.b) == 8:
			t = time.UnixMilli(int64(binary.BigEndian.Uint64(arg.b)))
		case len(arg.b) == 4:
			t = time.Unix((int64(binary.BigEndian.Uint32(arg.b))-(1<<31))*86400, 0)
		default:
			return value{}, errInvalid("Invalid argument for %s", e.name)
		}
		switch e.name {
		case "todate":
			return value{b: dateBytes(t)}, nil
		default:
			return value{b: int64Bytes(t.UnixMilli())}, nil
		}
	case "mintimeuuid", "maxtimeuuid":
		if len(arg.b) != 8 {
			return value{}, errInvalid("Invalid argument for %s", e.name)
		}
		return value{b: boundTimeUUID(int64(binary.BigEndian.Uint64(arg.b)), e.name == "maxtimeuuid")}, nil
	}
	return value{}, errInvalid("Unknown function %s", e.name)
}

// functionTypes gives the result type of the value functions we support.
var functionTypes = map[string]*cqlType{
	"now":              typeTimeUUID,
	"currenttimeuuid":  typeTimeUUID,
	"uuid":             typeUUID,
	"currenttimestamp": typeTimestamp,
	"currentdate":      typeDate,
	"currenttime":      typeTime,
	"totimestamp":      typeTimestamp,
	"tounixtimestamp":  typeBigint,
	"todate":           typeDate,
	"mintimeuuid":      typeTimeUUID,
	"maxtimeuuid":      typeTimeUUID,
}

func int64Bytes(v int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(v))
	return b
}

func int32Bytes(v int32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(v))
	return b
}

// dateBytes encodes the UTC calendar day of t as a CQL date (days since
// the epoch, offset by 2^31).
func dateBytes(t time.Time) []byte {
	y, m, d := t.UTC().Date()
	days := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
	return int32Bytes(int32(uint32(days + (1 << 31))))
}

// uuidEpochOffset is the number of 100ns intervals between 1582-10-15 and
// 1970-01-01.
const uuidEpochOffset = 0x01B21DD213814000

func timeUUIDTime(b []byte) time.Time {
	ts := timeUUIDTimestamp(b) - uuidEpochOffset
	return time.Unix(0, ts*100)
}

// boundTimeUUID builds the smallest or largest version 1 UUID of the given
// millisecond, as minTimeuuid/maxTimeuuid do.
func boundTimeUUID(millis int64, max bool) []byte {
	ts := uint64(millis*10000 + uuidEpochOffset)
	if max {
		ts += 9999
	}
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:], uint32(ts))
	binary.BigEndian.PutUint16(b[4:], uint16(ts>>32))
	binary.BigEndian.PutUint16(b[6:], uint16(ts>>48)&0x0fff|0x1000)
	if max {
		// The largest clock sequence and node under signed byte comparison.
		copy(b[8:], []byte{0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f})
	} else {
		copy(b[8:], []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80})
	}
	return b
}

// compileTerm turns a parsed term into an expression for the receiver. Bind
// markers are recorded in specs (indexed by marker position) so that the
// statement's variable metadata can be built.
func compileTerm(t term, recv receiver, specs []receiver) (expr, error) {
	switch x := t.(type) {
	case *bindMarker:
		if x.index < len(specs) {
			r := recv
			if x.name != "" {
				r.name = x.name
			}
			specs[x.index] = r
		}
		return &markerExpr{index: x.index, recv: recv}, nil
	case *literal:
		b, err := literalBytes(recv, x)
		if err != nil {
			return nil, err
		}
		return constExpr{v: b}, nil
	case *collectionLiteral:
		return compileCollection(x, recv, specs)
	case *functionCall:
		rt, ok := functionTypes[x.name]
		if !ok {
			return nil, errInvalid("Unknown function '%s'", x.name)
		}
		if !assignableFunctionResult(rt, recv.typ) {
			return nil, errInvalid("Type error: cannot assign result of function system.%s (type %s) to %s (type %s)", x.name, rt, recv.name, recv.typ)
		}
		fe := &funcExpr{name: x.name, typ: rt}
		switch x.name {
		case "totimestamp", "tounixtimestamp", "todate", "mintimeuuid", "maxtimeuuid":
			if len(x.args) != 1 {
				return nil, errInvalid("Invalid number of arguments in call to function system.%s: 1 required but %d provided", x.name, len(x.args))
			}
			argType := typeTimeUUID
			if x.name == "mintimeuuid" || x.name == "maxtimeuuid" {
				argType = typeTimestamp
			}
			if fc, ok := x.args[0].(*functionCall); ok {
				if ft, ok := functionTypes[fc.name]; ok {
					argType = ft
				}
			}
			arg, err := compileTerm(x.args[0], receiver{name: x.name + "(arg)", typ: argType, keyspace: recv.keyspace, table: recv.table}, specs)
			if err != nil {
				return nil, err
			}
			fe.args = []expr{arg}
		default:
			if len(x.args) != 0 {
				return nil, errInvalid("Invalid number of arguments in call to function system.%s: 0 required but %d provided", x.name, len(x.args))
			}
		}
		return fe, nil
	case *tupleLiteral:
		return nil, errInvalid("Invalid tuple literal for %s of type %s", recv.name, recv.typ)
	}
	return nil, errInvalid("unsupported term for %s", recv.name)
}

func assignableFunctionResult(result, recv *cqlType) bool {
	if result == recv {
		return true
	}
	// Timestamps are bigints in disguise and Cassandra accepts the
	// timeuuid functions where uuids are expected.
	return result == typeTimeUUID && recv == typeUUID
}

func compileCollection(c *collectionLiteral, recv receiver, specs []receiver) (expr, error) {
	t := recv.typ
	invalid := func() error {
		return errInvalid("Invalid %s literal for %s of type %s", collName(c.kind), recv.name, t)
	}
	switch t.kind {
	case kindList:
		if c.kind != collList {
			return nil, invalid()
		}
	case kindSet:
		if c.kind != collSet && c.kind != collEmptyBraces {
			return nil, invalid()
		}
	case kindMap:
		if c.kind != collMap && c.kind != collEmptyBraces {
			return nil, invalid()
		}
	default:
		return nil, invalid()
	}
	ce := &collectionExpr{typ: t}
	elemRecv := receiver{name: recv.name, typ: t.elem, keyspace: recv.keyspace, table: recv.table}
	for _, e := range c.elems {
		x, err := compileTerm(e, elemRecv, specs)
		if err != nil {
			return nil, err
		}
		ce.elems = append(ce.elems, x)
	}
	if t.kind == kindMap {
		valRecv := receiver{name: recv.name, typ: t.value, keyspace: recv.keyspace, table: recv.table}
		for _, v := range c.values {
			x, err := compileTerm(v, valRecv, specs)
			if err != nil {
				return nil, err
			}
			ce.values = append(ce.values, x)
		}
	}
	// A literal made only of constants is evaluated once.
	allConst := true
	for _, x := range append(append([]expr(nil), ce.elems...), ce.values...) {
		if _, ok := x.(constExpr); !ok {
			allConst = false
		}
	}
	if allConst {
		v, err := ce.eval(&bindings{})
		if err != nil {
			return nil, err
		}
		return constExpr{v: v.b}, nil
	}
	return ce, nil
}

func collName(k collKind) string {
	switch k {
	case collList:
		return "list"
	case collSet:
		return "set"
	case collMap:
		return "map"
	}
	return "collection"
}

// literalBytes converts a literal to the serialization of the receiver's
// type, with Cassandra's messages for literals of the wrong kind.
func literalBytes(recv receiver, lit *literal) ([]byte, error) {
	if lit.kind == litNull {
		return nil, nil
	}
	t := recv.typ
	bad := func() error {
		return errInvalid("Invalid %s constant (%s) for \"%s\" of type %s", lit.kind, lit.text, recv.name, t)
	}
	switch t.kind {
	case kindText, kindASCII:
		if lit.kind != litString {
			return nil, bad()
		}
		b := []byte(lit.text)
		if err := t.validate(b); err != nil {
			return nil, errInvalid("Invalid ASCII character in string literal")
		}
		return b, nil
	case kindInt, kindBigint, kindSmallint, kindTinyint, kindCounter:
		if lit.kind != litInteger {
			return nil, bad()
		}
		v, err := strconv.ParseInt(lit.text, 10, 64)
		if err != nil {
			return nil, errInvalid("Invalid INTEGER constant (%s) for \"%s\" of type %s: out of range", lit.text, recv.name, t)
		}
		switch t.kind {
		case kindInt:
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, errInvalid("Unable to make int from '%s'", lit.text)
			}
			return int32Bytes(int32(v)), nil
		case kindSmallint:
			if v < math.MinInt16 || v > math.MaxInt16 {
				return nil, errInvalid("Unable to make short from '%s'", lit.text)
			}
			return []byte{byte(v >> 8), byte(v)}, nil
		case kindTinyint:
			if v < math.MinInt8 || v > math.MaxInt8 {
				return nil, errInvalid("Unable to make byte from '%s'", lit.text)
			}
			return []byte{byte(v)}, nil
		}
		return int64Bytes(v), nil
	case kindVarint:
		if lit.kind != litInteger {
			return nil, bad()
		}
		v, ok := new(big.Int).SetString(lit.text, 10)
		if !ok {
			return nil, bad()
		}
		return encodeVarint(v), nil
	case kindFloat, kindDouble:
		if lit.kind != litInteger && lit.kind != litFloat {
			return nil, bad()
		}
		f, err := parseFloatLiteral(lit.text)
		if err != nil {
			return nil, bad()
		}
		if t.kind == kindFloat {
			b := make([]byte, 4)
			binary.BigEndian.PutUint32(b, math.Float32bits(float32(f)))
			return b, nil
		}
		b := make([]byte, 8)
		binary.BigEndian.PutUint64(b, math.Float64bits(f))
		return b, nil
	case kindDecimal:
		if lit.kind != litInteger && lit.kind != litFloat {
			return nil, bad()
		}
		b, ok := decimalFromString(lit.text)
		if !ok {
			return nil, bad()
		}
		return b, nil
	case kindBoolean:
		if lit.kind != litBool {
			return nil, bad()
		}
		if lit.text == "true" {
			return []byte{1}, nil
		}
		return []byte{0}, nil
	case kindUUID, kindTimeUUID:
		if lit.kind != litUUID {
			return nil, bad()
		}
		u, err := uuid.Parse(lit.text)
		if err != nil {
			return nil, bad()
		}
		if err := t.validate(u[:]); err != nil {
			return nil, errInvalid("%s", err.Error())
		}
		return u[:], nil
	case kindBlob:
		if lit.kind != litHex {
			return nil, bad()
		}
		s := lit.text[2:]
		if len(s)%2 == 1 {
			s = "0" + s
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, bad()
		}
		return b, nil
	case kindTimestamp:
		switch lit.kind {
		case litInteger:
			v, err := strconv.ParseInt(lit.text, 10, 64)
			if err != nil {
				return nil, bad()
			}
			return int64Bytes(v), nil
		case litString:
			ms, err := parseTimestamp(lit.text)
			if err != nil {
				return nil, errInvalid("Unable to coerce '%s' to a formatted date (long)", lit.text)
			}
			return int64Bytes(ms), nil
		}
		return nil, bad()
	case kindDate:
		switch lit.kind {
		case litInteger:
			v, err := strconv.ParseUint(lit.text, 10, 32)
			if err != nil {
				return nil, bad()
			}
			return int32Bytes(int32(uint32(v))), nil
		case litString:
			d, err := time.Parse("2006-01-02", lit.text)
			if err != nil {
				if v, err2 := strconv.ParseUint(lit.text, 10, 32); err2 == nil {
					return int32Bytes(int32(uint32(v))), nil
				}
				return nil, errInvalid("Unable to coerce '%s' to a formatted date (long)", lit.text)
			}
			return dateBytes(d), nil
		}
		return nil, bad()
	case kindTime:
		switch lit.kind {
		case litInteger:
			v, err := strconv.ParseInt(lit.text, 10, 64)
			if err != nil || v < 0 || v >= 86400e9 {
				return nil, bad()
			}
			return int64Bytes(v), nil
		case litString:
			ns, err := parseTimeOfDay(lit.text)
			if err != nil {
				return nil, errInvalid("Unable to coerce '%s' to a formatted time (long)", lit.text)
			}
			return int64Bytes(ns), nil
		}
		return nil, bad()
	case kindInet:
		if lit.kind != litString {
			return nil, bad()
		}
		ip := net.ParseIP(lit.text)
		if ip == nil {
			return nil, errInvalid("Unable to make inet address from '%s'", lit.text)
		}
		if v4 := ip.To4(); v4 != nil && !strings.Contains(lit.text, ":") {
			return []byte(v4), nil
		}
		return []byte(ip.To16()), nil
	case kindList, kindSet, kindMap:
		return nil, bad()
	}
	return nil, bad()
}

func parseFloatLiteral(s string) (float64, error) {
	switch s {
	case "NaN", "-NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

// decimalFromString encodes a decimal literal as int32 scale + varint.
func decimalFromString(s string) ([]byte, bool) {
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return nil, false
		}
		mant, exp = s[:i], e
	}
	scale := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		scale = len(mant) - i - 1
		mant = mant[:i] + mant[i+1:]
	}
	scale -= exp
	v, ok := new(big.Int).SetString(mant, 10)
	if !ok {
		return nil, false
	}
	out := int32Bytes(int32(scale))
	return append(out, encodeVarint(v)...), true
}

// timestampLayouts are the formats Cassandra's TimestampSerializer accepts.
var timestampLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04Z07:00",
	"2006-01-02 15:04Z0700",
	"2006-01-02 15:04",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04Z0700",
	"2006-01-02T15:04",
	"2006-01-02Z07:00",
	"2006-01-02Z0700",
	"2006-01-02",
}

// parseTimestamp parses a timestamp string into epoch milliseconds. Times
// without a zone are UTC.
func parseTimestamp(s string) (int64, error) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	var lastErr error
	for _, layout := range timestampLayouts {
		t, err := time.ParseInLocation(layout, s, time.UTC)
		if err == nil {
			return t.UnixMilli(), nil
		}
		lastErr = err
	}
	return 0, lastErr
}

// parseTimeOfDay parses hh:mm:ss[.fffffffff] into nanoseconds since midnight.
func parseTimeOfDay(s string) (int64, error) {
	main, frac, _ := strings.Cut(s, ".")
	parts := strings.Split(main, ":")
	if len(parts) != 3 {
		return 0, strconv.ErrSyntax
	}
	var hms [3]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return 0, err
		}
		hms[i] = v
	}
	if hms[0] > 23 || hms[1] > 59 || hms[2] > 59 {
		return 0, strconv.ErrRange
	}
	ns := (hms[0]*3600 + hms[1]*60 + hms[2]) * 1e9
	if frac != "" {
		if len(frac) > 9 {
			return 0, strconv.ErrSyntax
		}
		f, err := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err != nil {
			return 0, err
		}
		ns += f
	}
	return ns, nil
}
