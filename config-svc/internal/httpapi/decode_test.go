package httpapi

import "testing"

func TestBadString(t *testing.T) {
	tests := []struct {
		raw           string
		want          int
		wantSurrogate bool
	}{
		{`"plain"`, -1, false},
		{`"café ☕ 😀"`, -1, false},
		{`"\ufffd is a character like any other: ` + "\ufffd" + `"`, -1, false},
		{`"\ud83d\ude00 is a pair"`, -1, false},
		{`"\uD83D\uDE00 in upper case"`, -1, false},
		{`"\\ud800 is a backslash and text"`, -1, false},
		{`"\n\t\"\/\u00e9"`, -1, false},
		{"\"caf\xe9\"", 4, false},
		{"\"\xed\xa0\x80 a surrogate in UTF-8\"", 1, false},
		{"\"ok\xc3\"", 3, false},
		{`"a\ud83d"`, 2, true},
		{`"\ud83dx"`, 1, true},
		{`"\ud83d\ud83d"`, 1, true},
		{`"\ude00\ud83d"`, 1, true},
		{`"\ud83d\u0041"`, 1, true},
	}
	for _, tt := range tests {
		got, gotSurrogate := badString([]byte(tt.raw))
		if got != tt.want || gotSurrogate != tt.wantSurrogate {
			t.Errorf("badString(%q) = %d, %v; want %d, %v", tt.raw, got, gotSurrogate, tt.want, tt.wantSurrogate)
		}
	}
}
