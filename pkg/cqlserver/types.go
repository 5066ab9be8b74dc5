package cqlserver

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"unicode/utf8"

	"github.com/datastax/go-cassandra-native-protocol/datatype"
)

// kind identifies a CQL type.
type kind uint8

const (
	kindInvalid kind = iota
	kindASCII
	kindBigint
	kindBlob
	kindBoolean
	kindCounter
	kindDate
	kindDecimal
	kindDouble
	kindFloat
	kindInet
	kindInt
	kindSmallint
	kindText
	kindTime
	kindTimestamp
	kindTimeUUID
	kindTinyint
	kindUUID
	kindVarint
	kindList
	kindSet
	kindMap
)

// cqlType is a CQL data type. Primitive types are shared singletons;
// collection types carry their element types. Values of every type are kept
// in their native-protocol serialization, so a bound value flows from the
// request into storage and back into a response without re-encoding.
type cqlType struct {
	kind   kind
	frozen bool     // only meaningful for collections
	elem   *cqlType // list and set element; map key
	value  *cqlType // map value
}

var (
	typeASCII     = &cqlType{kind: kindASCII}
	typeBigint    = &cqlType{kind: kindBigint}
	typeBlob      = &cqlType{kind: kindBlob}
	typeBoolean   = &cqlType{kind: kindBoolean}
	typeCounter   = &cqlType{kind: kindCounter}
	typeDate      = &cqlType{kind: kindDate}
	typeDecimal   = &cqlType{kind: kindDecimal}
	typeDouble    = &cqlType{kind: kindDouble}
	typeFloat     = &cqlType{kind: kindFloat}
	typeInet      = &cqlType{kind: kindInet}
	typeInt       = &cqlType{kind: kindInt}
	typeSmallint  = &cqlType{kind: kindSmallint}
	typeText      = &cqlType{kind: kindText}
	typeTime      = &cqlType{kind: kindTime}
	typeTimestamp = &cqlType{kind: kindTimestamp}
	typeTimeUUID  = &cqlType{kind: kindTimeUUID}
	typeTinyint   = &cqlType{kind: kindTinyint}
	typeUUID      = &cqlType{kind: kindUUID}
	typeVarint    = &cqlType{kind: kindVarint}
)

// primitiveTypes maps CQL type names (lower case) to types.
var primitiveTypes = map[string]*cqlType{
	"ascii":     typeASCII,
	"bigint":    typeBigint,
	"blob":      typeBlob,
	"boolean":   typeBoolean,
	"counter":   typeCounter,
	"date":      typeDate,
	"decimal":   typeDecimal,
	"double":    typeDouble,
	"float":     typeFloat,
	"inet":      typeInet,
	"int":       typeInt,
	"smallint":  typeSmallint,
	"text":      typeText,
	"varchar":   typeText,
	"time":      typeTime,
	"timestamp": typeTimestamp,
	"timeuuid":  typeTimeUUID,
	"tinyint":   typeTinyint,
	"uuid":      typeUUID,
	"varint":    typeVarint,
}

func listOf(elem *cqlType, frozen bool) *cqlType {
	return &cqlType{kind: kindList, elem: elem, frozen: frozen}
}

func setOf(elem *cqlType, frozen bool) *cqlType {
	return &cqlType{kind: kindSet, elem: elem, frozen: frozen}
}

func mapOf(key, value *cqlType, frozen bool) *cqlType {
	return &cqlType{kind: kindMap, elem: key, value: value, frozen: frozen}
}

func (t *cqlType) isCollection() bool {
	return t.kind == kindList || t.kind == kindSet || t.kind == kindMap
}

// isMultiCell reports whether values of t are stored element by element
// (non-frozen collections), which is what allows element updates.
func (t *cqlType) isMultiCell() bool { return t.isCollection() && !t.frozen }

// String returns the type as Cassandra writes it in system_schema.columns.
func (t *cqlType) String() string {
	var s string
	switch t.kind {
	case kindList:
		s = "list<" + t.elem.String() + ">"
	case kindSet:
		s = "set<" + t.elem.String() + ">"
	case kindMap:
		s = "map<" + t.elem.String() + ", " + t.value.String() + ">"
	default:
		return primitiveName(t.kind)
	}
	if t.frozen {
		return "frozen<" + s + ">"
	}
	return s
}

func primitiveName(k kind) string {
	switch k {
	case kindASCII:
		return "ascii"
	case kindBigint:
		return "bigint"
	case kindBlob:
		return "blob"
	case kindBoolean:
		return "boolean"
	case kindCounter:
		return "counter"
	case kindDate:
		return "date"
	case kindDecimal:
		return "decimal"
	case kindDouble:
		return "double"
	case kindFloat:
		return "float"
	case kindInet:
		return "inet"
	case kindInt:
		return "int"
	case kindSmallint:
		return "smallint"
	case kindText:
		return "text"
	case kindTime:
		return "time"
	case kindTimestamp:
		return "timestamp"
	case kindTimeUUID:
		return "timeuuid"
	case kindTinyint:
		return "tinyint"
	case kindUUID:
		return "uuid"
	case kindVarint:
		return "varint"
	}
	return "invalid"
}

// dataType returns the native-protocol description of t.
func (t *cqlType) dataType() datatype.DataType {
	switch t.kind {
	case kindASCII:
		return datatype.Ascii
	case kindBigint:
		return datatype.Bigint
	case kindBlob:
		return datatype.Blob
	case kindBoolean:
		return datatype.Boolean
	case kindCounter:
		return datatype.Counter
	case kindDate:
		return datatype.Date
	case kindDecimal:
		return datatype.Decimal
	case kindDouble:
		return datatype.Double
	case kindFloat:
		return datatype.Float
	case kindInet:
		return datatype.Inet
	case kindInt:
		return datatype.Int
	case kindSmallint:
		return datatype.Smallint
	case kindText:
		return datatype.Varchar
	case kindTime:
		return datatype.Time
	case kindTimestamp:
		return datatype.Timestamp
	case kindTimeUUID:
		return datatype.Timeuuid
	case kindTinyint:
		return datatype.Tinyint
	case kindUUID:
		return datatype.Uuid
	case kindVarint:
		return datatype.Varint
	case kindList:
		return datatype.NewList(t.elem.dataType())
	case kindSet:
		return datatype.NewSet(t.elem.dataType())
	case kindMap:
		return datatype.NewMap(t.elem.dataType(), t.value.dataType())
	}
	panic(fmt.Sprintf("cqlserver: no data type for kind %d", t.kind))
}

// compare orders two serialized values of type t the way Cassandra's
// AbstractType.compare does. Empty values sort before everything else.
func (t *cqlType) compare(a, b []byte) int {
	if len(a) == 0 || len(b) == 0 {
		return cmp.Compare(len(a), len(b))
	}
	switch t.kind {
	case kindInt, kindBigint, kindSmallint, kindTinyint, kindCounter, kindTimestamp, kindTime:
		return cmp.Compare(decodeSigned(a), decodeSigned(b))
	case kindFloat:
		return cmpFloat(float64(math.Float32frombits(binary.BigEndian.Uint32(a))), float64(math.Float32frombits(binary.BigEndian.Uint32(b))))
	case kindDouble:
		return cmpFloat(math.Float64frombits(binary.BigEndian.Uint64(a)), math.Float64frombits(binary.BigEndian.Uint64(b)))
	case kindVarint:
		return decodeVarint(a).Cmp(decodeVarint(b))
	case kindDecimal:
		return compareDecimal(a, b)
	case kindUUID:
		return compareUUID(a, b)
	case kindTimeUUID:
		return compareTimeUUID(a, b)
	case kindList, kindSet:
		ea, _ := splitCollection(a)
		eb, _ := splitCollection(b)
		for i := 0; i < len(ea) && i < len(eb); i++ {
			if c := t.elem.compare(ea[i], eb[i]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(ea), len(eb))
	case kindMap:
		ka, va, _ := splitMap(a)
		kb, vb, _ := splitMap(b)
		for i := 0; i < len(ka) && i < len(kb); i++ {
			if c := t.elem.compare(ka[i], kb[i]); c != 0 {
				return c
			}
			if c := t.value.compare(va[i], vb[i]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(ka), len(kb))
	default: // text, ascii, blob, boolean, inet, date: unsigned bytes
		return bytes.Compare(a, b)
	}
}

// cmpFloat follows Java's Double.compare: -0 < +0 and NaN above everything.
func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	}
	return cmp.Compare(int64(math.Float64bits(a)), int64(math.Float64bits(b)))
}

// decodeSigned decodes a big-endian two's complement integer of 1 to 8 bytes.
func decodeSigned(b []byte) int64 {
	var v int64
	if len(b) > 0 && b[0]&0x80 != 0 {
		v = -1
	}
	for _, c := range b {
		v = v<<8 | int64(c)
	}
	return v
}

func decodeVarint(b []byte) *big.Int {
	v := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return v
}

func encodeVarint(v *big.Int) []byte {
	switch v.Sign() {
	case 0:
		return []byte{0}
	case 1:
		b := v.Bytes()
		if b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// Two's complement of a negative number: 2^(8n) + v for the smallest n.
	n := (v.BitLen() + 8) / 8
	m := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), uint(8*n)), v)
	b := m.Bytes()
	for len(b) < n {
		b = append([]byte{0xff}, b...)
	}
	// Drop redundant leading 0xff bytes.
	for len(b) > 1 && b[0] == 0xff && b[1]&0x80 != 0 {
		b = b[1:]
	}
	return b
}

// compareDecimal compares serialized decimals (int32 scale + varint unscaled).
func compareDecimal(a, b []byte) int {
	ra, okA := decimalRat(a)
	rb, okB := decimalRat(b)
	if !okA || !okB {
		return bytes.Compare(a, b)
	}
	return ra.Cmp(rb)
}

func decimalRat(b []byte) (*big.Rat, bool) {
	if len(b) < 4 {
		return nil, false
	}
	scale := int32(binary.BigEndian.Uint32(b))
	unscaled := decodeVarint(b[4:])
	r := new(big.Rat).SetInt(unscaled)
	if scale == 0 {
		return r, true
	}
	abs := scale
	if abs < 0 {
		abs = -abs
	}
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs)), nil)
	if scale > 0 {
		r.Quo(r, new(big.Rat).SetInt(p))
	} else {
		r.Mul(r, new(big.Rat).SetInt(p))
	}
	return r, true
}

func uuidVersion(b []byte) int { return int(b[6] >> 4) }

// timeUUIDTimestamp reorders the time fields of a version 1 UUID into a
// comparable 60-bit count of 100ns intervals since 1582-10-15.
func timeUUIDTimestamp(b []byte) int64 {
	msb := binary.BigEndian.Uint64(b)
	return int64((msb<<48)|((msb<<16)&0xFFFF00000000)|(msb>>32)) & 0x0FFFFFFFFFFFFFFF
}

// compareUUID follows Cassandra's UUIDType: version first, then time for
// version 1, then unsigned bytes.
func compareUUID(a, b []byte) int {
	if len(a) != 16 || len(b) != 16 {
		return bytes.Compare(a, b)
	}
	va, vb := uuidVersion(a), uuidVersion(b)
	if va != vb {
		return cmp.Compare(va, vb)
	}
	if va == 1 {
		if c := cmp.Compare(timeUUIDTimestamp(a), timeUUIDTimestamp(b)); c != 0 {
			return c
		}
		return bytes.Compare(a[8:], b[8:])
	}
	return bytes.Compare(a, b)
}

// compareTimeUUID follows Cassandra's TimeUUIDType: time first, then a
// signed byte-wise comparison of the clock sequence and node.
func compareTimeUUID(a, b []byte) int {
	if len(a) != 16 || len(b) != 16 {
		return bytes.Compare(a, b)
	}
	if c := cmp.Compare(timeUUIDTimestamp(a), timeUUIDTimestamp(b)); c != 0 {
		return c
	}
	for i := 8; i < 16; i++ {
		if c := cmp.Compare(int8(a[i]), int8(b[i])); c != 0 {
			return c
		}
	}
	return 0
}

// fixedSizes are the types whose values have one size (or are empty), with
// Cassandra's message for a value of another size.
var fixedSizes = map[kind]struct {
	size    int
	message string
}{
	kindInt:       {4, "Expected 4 or 0 byte int (%d)"},
	kindBigint:    {8, "Expected 8 or 0 byte long (%d)"},
	kindCounter:   {8, "Expected 8 or 0 byte long (%d)"},
	kindSmallint:  {2, "Expected 2 bytes for a smallint (%d)"},
	kindTinyint:   {1, "Expected 1 byte for a tinyint (%d)"},
	kindBoolean:   {1, "Expected 1 or 0 byte value (%d)"},
	kindFloat:     {4, "Expected 4 or 0 byte value for a float (%d)"},
	kindDouble:    {8, "Expected 8 or 0 byte value for a double (%d)"},
	kindTimestamp: {8, "Expected 8 or 0 byte long for date (%d)"},
	kindDate:      {4, "Expected 4 byte long for date (%d)"},
	kindTime:      {8, "Expected 8 byte long for time (%d)"},
	kindUUID:      {16, "UUID should be 16 or 0 bytes (%d)"},
	kindTimeUUID:  {16, "UUID should be 16 or 0 bytes (%d)"},
}

// validate checks that b is a well-formed serialized value of type t and
// returns Cassandra's marshalling message when it is not. A nil or empty
// value is accepted (Cassandra's "empty" values) for primitive types.
func (t *cqlType) validate(b []byte) error {
	n := len(b)
	if f, ok := fixedSizes[t.kind]; ok && n != f.size && n != 0 {
		return fmt.Errorf(f.message, n)
	}
	switch t.kind {
	case kindTime:
		if n == 8 {
			if v := int64(binary.BigEndian.Uint64(b)); v < 0 || v >= 86400e9 {
				return fmt.Errorf("Time value %d out of range: must be in [0, 86399999999999]", v)
			}
		}
	case kindTimeUUID:
		if n == 16 && uuidVersion(b) != 1 {
			return fmt.Errorf("Invalid version for TimeUUID type.")
		}
	case kindInet:
		if n != 4 && n != 16 && n != 0 {
			return fmt.Errorf("Invalid inet address length %d (expected 4 or 16)", n)
		}
	case kindDecimal:
		if n != 0 && n < 4 {
			return fmt.Errorf("Expected at least 4 bytes for a decimal (%d)", n)
		}
	case kindText:
		if !utf8.Valid(b) {
			return fmt.Errorf("String didn't validate.")
		}
	case kindASCII:
		for _, c := range b {
			if c > 127 {
				return fmt.Errorf("Invalid byte for ascii: %d", c)
			}
		}
	case kindList, kindSet:
		elems, err := splitCollection(b)
		if err != nil {
			return err
		}
		for _, e := range elems {
			if e == nil {
				return fmt.Errorf("null is not supported inside collections")
			}
			if err := t.elem.validate(e); err != nil {
				return err
			}
		}
	case kindMap:
		keys, vals, err := splitMap(b)
		if err != nil {
			return err
		}
		for i := range keys {
			if keys[i] == nil || vals[i] == nil {
				return fmt.Errorf("null is not supported inside collections")
			}
			if err := t.elem.validate(keys[i]); err != nil {
				return err
			}
			if err := t.value.validate(vals[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// normalize returns the canonical serialization of a valid value: sets
// sorted and deduplicated, maps sorted by key with the last duplicate
// winning, recursively. Canonical forms make frozen collections comparable
// byte-wise and usable in keys.
func (t *cqlType) normalize(b []byte) []byte {
	switch t.kind {
	case kindList:
		elems, _ := splitCollection(b)
		changed := false
		for i, e := range elems {
			if ne := t.elem.normalize(e); !bytes.Equal(ne, e) {
				elems[i], changed = ne, true
			}
		}
		if !changed {
			return b
		}
		return joinCollection(elems)
	case kindSet:
		elems, _ := splitCollection(b)
		for i, e := range elems {
			elems[i] = t.elem.normalize(e)
		}
		sortBytesBy(elems, t.elem.compare)
		out := elems[:0]
		for i, e := range elems {
			if i == 0 || t.elem.compare(e, out[len(out)-1]) != 0 {
				out = append(out, e)
			}
		}
		return joinCollection(out)
	case kindMap:
		keys, vals, _ := splitMap(b)
		type kv struct{ k, v []byte }
		pairs := make([]kv, len(keys))
		for i := range keys {
			pairs[i] = kv{t.elem.normalize(keys[i]), t.value.normalize(vals[i])}
		}
		// Stable insertion sort keeps the order of duplicates so the last wins.
		for i := 1; i < len(pairs); i++ {
			for j := i; j > 0 && t.elem.compare(pairs[j-1].k, pairs[j].k) > 0; j-- {
				pairs[j-1], pairs[j] = pairs[j], pairs[j-1]
			}
		}
		var ks, vs [][]byte
		for i, p := range pairs {
			if i+1 < len(pairs) && t.elem.compare(p.k, pairs[i+1].k) == 0 {
				continue
			}
			ks, vs = append(ks, p.k), append(vs, p.v)
		}
		return joinMap(ks, vs)
	}
	return b
}

func sortBytesBy(s [][]byte, cmp func(a, b []byte) int) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && cmp(s[j-1], s[j]) > 0; j-- {
			s[j-1], s[j] = s[j], s[j-1]
		}
	}
}

// splitCollection parses a serialized list or set (protocol v3+ format:
// an int count, then an int length and bytes per element).
func splitCollection(b []byte) ([][]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("Not enough bytes to read a list")
	}
	n := int(int32(binary.BigEndian.Uint32(b)))
	if n < 0 {
		return nil, fmt.Errorf("Invalid negative collection size %d", n)
	}
	b = b[4:]
	if n > len(b)/4 {
		return nil, fmt.Errorf("Not enough bytes to read a list")
	}
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		e, rest, err := readElement(b)
		if err != nil {
			return nil, err
		}
		out, b = append(out, e), rest
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("Unexpected extraneous bytes after list value")
	}
	return out, nil
}

// splitMap parses a serialized map.
func splitMap(b []byte) (keys, values [][]byte, err error) {
	if len(b) == 0 {
		return nil, nil, nil
	}
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("Not enough bytes to read a map")
	}
	n := int(int32(binary.BigEndian.Uint32(b)))
	if n < 0 {
		return nil, nil, fmt.Errorf("Invalid negative map size %d", n)
	}
	b = b[4:]
	if n > len(b)/8 {
		return nil, nil, fmt.Errorf("Not enough bytes to read a map")
	}
	keys, values = make([][]byte, 0, n), make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		var k, v []byte
		if k, b, err = readElement(b); err != nil {
			return nil, nil, err
		}
		if v, b, err = readElement(b); err != nil {
			return nil, nil, err
		}
		keys, values = append(keys, k), append(values, v)
	}
	if len(b) != 0 {
		return nil, nil, fmt.Errorf("Unexpected extraneous bytes after map value")
	}
	return keys, values, nil
}

func readElement(b []byte) (elem, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("Not enough bytes to read a collection element")
	}
	n := int(int32(binary.BigEndian.Uint32(b)))
	b = b[4:]
	if n < 0 {
		return nil, b, nil
	}
	if n > len(b) {
		return nil, nil, fmt.Errorf("Not enough bytes to read a collection element")
	}
	return b[:n:n], b[n:], nil
}

func joinCollection(elems [][]byte) []byte {
	size := 4
	for _, e := range elems {
		size += 4 + len(e)
	}
	out := make([]byte, 4, size)
	binary.BigEndian.PutUint32(out, uint32(len(elems)))
	for _, e := range elems {
		out = binary.BigEndian.AppendUint32(out, uint32(len(e)))
		out = append(out, e...)
	}
	return out
}

func joinMap(keys, values [][]byte) []byte {
	size := 4
	for i := range keys {
		size += 8 + len(keys[i]) + len(values[i])
	}
	out := make([]byte, 4, size)
	binary.BigEndian.PutUint32(out, uint32(len(keys)))
	for i := range keys {
		out = binary.BigEndian.AppendUint32(out, uint32(len(keys[i])))
		out = append(out, keys[i]...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(values[i])))
		out = append(out, values[i]...)
	}
	return out
}
