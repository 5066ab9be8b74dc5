package cqlserver

import (
	"cmp"
	"encoding/hex"
	"math"
	"math/big"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestMurmur3Token(t *testing.T) {
	// Cassandra's token of the int partition key 1 (documented widely, e.g.
	// SELECT token(id) FROM t WHERE id = 1).
	if got := murmur3Token(int32Bytes(1)); got != -4069959284402364209 {
		t.Fatalf("token(int 1) = %d", got)
	}
	// h1 of MurmurHash3 x64_128 as computed by Cassandra's Java
	// implementation (sign-extended tail bytes), for keys of every tail
	// length; the values are those the DataStax drivers test against.
	series := []uint64{
		0x0000000000000000, 0x2ac9debed546a380, 0x649e4eaa7fc1708e, 0xce68f60d7c353bdb,
		0x0f95757ce7f38254, 0x0f04e459497f3fc1, 0x88c0a92586be0a27, 0x13eb9fb82606f7a6,
		0x8236039b7387354d, 0x4c1e87519fe738ba, 0x3f9652ac3effeb24, 0x3f33760ded9006c6,
		0xaed70a6631854cb1, 0x8a299a8f8e0e2da7, 0x624b675c779249a6, 0xa4b203bb1d90b9a3,
		0xa3293ad698ecb99a, 0xbc740023dbd50048, 0x3fe5ab9837d25cdd, 0x2d0338c1ca87d132,
	}
	key := ""
	for i, want := range series {
		got := murmur3Token([]byte(key))
		w := int64(want)
		if w == math.MinInt64 {
			w = math.MaxInt64
		}
		if got != w {
			t.Errorf("token(%q) = %d, want %d", key, got, w)
		}
		key += strconv.Itoa(i % 10)
	}
	for s, want := range map[string]uint64{
		"hello":                     0xcbd8a7b341bd9b02,
		"hello, world":              0x342fac623a5ebc8e,
		"19 Jan 2038 at 3:14:07 AM": 0xb89e5988b737affc,
		"The quick brown fox jumps over the lazy dog.": 0xcd99481f9ee902c9,
	} {
		if got := murmur3Token([]byte(s)); got != int64(want) {
			t.Errorf("token(%q) = %x, want %x", s, got, want)
		}
	}
	// A key whose tail has bytes >= 0x80 exercises the sign extension.
	signed, _ := hex.DecodeString("00104327529fb645dd00b883ec39ae448bb800000400066a6b00")
	if got := murmur3Token(signed); got != -9223371632693506265 {
		t.Errorf("signed tail: %d", got)
	}
}

func TestPartitionKeyBytes(t *testing.T) {
	parts := [][]byte{[]byte("acme"), int32Bytes(7)}
	key := partitionKeyBytes(parts)
	want := []byte{0, 4, 'a', 'c', 'm', 'e', 0, 0, 4, 0, 0, 0, 7, 0}
	if string(key) != string(want) {
		t.Fatalf("composite key %x", key)
	}
	back := splitPartitionKey(key, 2)
	if string(back[0]) != "acme" || string(back[1]) != string(int32Bytes(7)) {
		t.Fatalf("split %q", back)
	}
}

func TestTypeOrdering(t *testing.T) {
	u := func(s string) []byte { x := uuid.MustParse(s); return x[:] }
	tu := func(d time.Duration, node byte) []byte {
		b := boundTimeUUID(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(d).UnixMilli(), false)
		b[15] = node
		return b
	}
	dbl := func(f float64) []byte { return int64Bytes(int64(math.Float64bits(f))) }
	vi := func(s string) []byte { v, _ := new(big.Int).SetString(s, 10); return encodeVarint(v) }
	dec := func(s string) []byte { b, _ := decimalFromString(s); return b }
	cases := []struct {
		typ    *cqlType
		sorted [][]byte
	}{
		{typeInt, [][]byte{{}, int32Bytes(-5), int32Bytes(-1), int32Bytes(0), int32Bytes(3), int32Bytes(1 << 30)}},
		{typeBigint, [][]byte{int64Bytes(math.MinInt64), int64Bytes(-1), int64Bytes(0), int64Bytes(math.MaxInt64)}},
		{typeSmallint, [][]byte{{0x80, 0}, {0xff, 0xff}, {0, 0}, {0x7f, 0xff}}},
		{typeTinyint, [][]byte{{0x80}, {0xff}, {0}, {1}}},
		{typeText, [][]byte{[]byte("B"), []byte("a"), []byte("ab"), []byte("b"), []byte("é")}},
		{typeDouble, [][]byte{dbl(math.Inf(-1)), dbl(-1.5), dbl(math.Copysign(0, -1)), dbl(0), dbl(2), dbl(math.Inf(1)), dbl(math.NaN())}},
		{typeVarint, [][]byte{vi("-100000000000000000000"), vi("-1"), vi("0"), vi("127"), vi("128"), vi("100000000000000000000")}},
		{typeDecimal, [][]byte{dec("-1.5"), dec("0.001"), dec("0.01"), dec("1"), dec("1.5"), dec("10")}},
		{typeBoolean, [][]byte{{0}, {1}}},
		{typeTimestamp, [][]byte{int64Bytes(-1000), int64Bytes(0), int64Bytes(1700000000000)}},
		{typeTimeUUID, [][]byte{tu(0, 0x01), tu(0, 0x7f), tu(0, 0x80)[0:16], tu(time.Millisecond, 0), tu(time.Hour, 0)}},
		{typeUUID, [][]byte{tu(0, 0), tu(time.Hour, 0), u("00000000-0000-4000-8000-000000000000"), u("ffffffff-ffff-4fff-bfff-ffffffffffff")}},
		{listOf(typeInt, true), [][]byte{joinCollection([][]byte{int32Bytes(-1)}), joinCollection([][]byte{int32Bytes(1)}), joinCollection([][]byte{int32Bytes(1), int32Bytes(0)})}},
	}
	// In TimeUUIDType's signed byte order 0x80 sorts before 0x01.
	cases[10].sorted = [][]byte{tu(0, 0x80), tu(0, 0x01), tu(0, 0x7f), tu(time.Millisecond, 0), tu(time.Hour, 0)}
	for _, c := range cases {
		for i := range c.sorted {
			for j := range c.sorted {
				got := c.typ.compare(c.sorted[i], c.sorted[j])
				want := cmp.Compare(i, j)
				if got != want {
					t.Errorf("%s: compare(#%d %x, #%d %x) = %d, want %d", c.typ, i, c.sorted[i], j, c.sorted[j], got, want)
				}
			}
		}
		shuffled := append([][]byte(nil), c.sorted...)
		sort.Slice(shuffled, func(i, j int) bool { return string(shuffled[i]) > string(shuffled[j]) })
		sort.SliceStable(shuffled, func(i, j int) bool { return c.typ.compare(shuffled[i], shuffled[j]) < 0 })
		for i := range shuffled {
			if string(shuffled[i]) != string(c.sorted[i]) {
				t.Errorf("%s: sorted position %d is %x, want %x", c.typ, i, shuffled[i], c.sorted[i])
			}
		}
	}
}

func TestVarintEncoding(t *testing.T) {
	for _, s := range []string{"0", "1", "-1", "127", "128", "-128", "-129", "255", "256", "-32768", "123456789012345678901234567890", "-123456789012345678901234567890"} {
		v, _ := new(big.Int).SetString(s, 10)
		b := encodeVarint(v)
		if got := decodeVarint(b); got.Cmp(v) != 0 {
			t.Errorf("%s: round trip %s (%x)", s, got, b)
		}
	}
	if b := encodeVarint(big.NewInt(128)); hex.EncodeToString(b) != "0080" {
		t.Errorf("128 -> %x", b)
	}
	if b := encodeVarint(big.NewInt(-129)); hex.EncodeToString(b) != "ff7f" {
		t.Errorf("-129 -> %x", b)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		typ  *cqlType
		b    []byte
		want string
	}{
		{typeInt, make([]byte, 8), "Expected 4 or 0 byte int (8)"},
		{typeBigint, make([]byte, 4), "Expected 8 or 0 byte long (4)"},
		{typeText, []byte{0xff}, "String didn't validate."},
		{typeASCII, []byte{0xc3, 0xa9}, "Invalid byte for ascii: 195"},
		{typeTimeUUID, func() []byte { u := uuid.New(); return u[:] }(), "Invalid version for TimeUUID type."},
		{listOf(typeInt, false), joinCollection([][]byte{{1}}), "Expected 4 or 0 byte int (1)"},
		{mapOf(typeText, typeInt, false), []byte{0, 0, 0, 5}, "Not enough bytes to read a map"},
	}
	for _, c := range cases {
		err := c.typ.validate(c.b)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s %x: %v, want %q", c.typ, c.b, err, c.want)
		}
	}
	if err := typeInt.validate(int32Bytes(5)); err != nil {
		t.Error(err)
	}
	set := setOf(typeInt, true)
	norm := set.normalize(joinCollection([][]byte{int32Bytes(3), int32Bytes(-1), int32Bytes(3)}))
	if want := joinCollection([][]byte{int32Bytes(-1), int32Bytes(3)}); string(norm) != string(want) {
		t.Errorf("normalized set %x", norm)
	}
}

func TestLiteralConversion(t *testing.T) {
	ms, err := parseTimestamp("2024-01-02T03:04:05.678Z")
	if err != nil || ms != time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC).UnixMilli() {
		t.Fatalf("timestamp %d %v", ms, err)
	}
	ns, err := parseTimeOfDay("01:02:03.000000004")
	if err != nil || ns != (3723e9+4) {
		t.Fatalf("time %d %v", ns, err)
	}
	b, ok := decimalFromString("-12.345e2")
	if !ok {
		t.Fatal("decimal")
	}
	r, _ := decimalRat(b)
	if r.FloatString(1) != "-1234.5" {
		t.Fatalf("decimal %s", r.FloatString(3))
	}
	_, err = literalBytes(receiver{name: "k", typ: typeInt}, &literal{kind: litString, text: "one"})
	if err == nil || err.Error() != `Invalid STRING constant (one) for "k" of type int` {
		t.Fatalf("got %v", err)
	}
}
