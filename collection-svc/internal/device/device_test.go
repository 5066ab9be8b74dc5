package device

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		ua   string
		want Info
	}{
		{"chrome on windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
			Info{Browser: "Chrome", OS: "Windows", Category: Desktop}},
		{"safari on iphone", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
			Info{Browser: "Safari", OS: "iOS", Category: Mobile}},
		{"ipad", "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
			Info{Browser: "Safari", OS: "iOS", Category: Tablet}},
		{"googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
			Info{Browser: "Googlebot", Category: Other, Bot: true, BotName: "Googlebot"}},
		{"headless chrome", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
			Info{Browser: "Headless Chrome", OS: "Linux", Category: Other, Bot: true, BotName: "HeadlessChrome"}},
		{"empty", "", Info{Category: Other}},
	}
	p := NewParser(2)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second answer comes from the cache
				if got := p.Parse(tt.ua); got != tt.want {
					t.Fatalf("Parse = %+v, want %+v", got, tt.want)
				}
			}
		})
	}
}
