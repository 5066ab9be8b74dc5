package crawlers

import (
	"bufio"
	"os"
	"testing"
)

// naive is the specification of Match: the first pattern of the list that
// matches.
func naive(m *Matcher, ua string) (string, bool) {
	for i, re := range m.res {
		if re.MatchString(ua) {
			return m.names[i], true
		}
	}
	return "", false
}

func TestMatchAgreesWithScanningEveryPattern(t *testing.T) {
	f, err := os.Open("testdata/instances.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var uas []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		uas = append(uas, sc.Text())
	}
	if len(uas) < 1000 {
		t.Fatalf("corpus has %d user agents; regenerate with make crawlers", len(uas))
	}
	m := Default
	for _, ua := range uas {
		gotName, got := m.Match(ua)
		wantName, want := naive(m, ua)
		if got != want || gotName != wantName {
			t.Errorf("Match(%q) = %q, %v; want %q, %v", ua, gotName, got, wantName, want)
		}
		if !got {
			t.Errorf("listed crawler %q not recognised", ua)
		}
	}
}

func TestBrowsersAreNotCrawlers(t *testing.T) {
	tests := []struct {
		ua       string
		wantName string
		want     bool
	}{
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "", false},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "", false},
		{"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "", false},
		{"", "", false},
		{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", true},
		{"curl/8.5.0", "curl", true},
	}
	for _, tt := range tests {
		t.Run(tt.ua, func(t *testing.T) {
			gotName, got := Default.Match(tt.ua)
			if got != tt.want || gotName != tt.wantName {
				t.Fatalf("Match = %q, %v; want %q, %v", gotName, got, tt.wantName, tt.want)
			}
		})
	}
}

func BenchmarkMatchBrowser(b *testing.B) {
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	for b.Loop() {
		Default.Match(ua)
	}
}
