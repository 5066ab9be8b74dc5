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
		{"android tablet (no Mobile token)", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
			Info{Browser: "Chrome", OS: "Android", Category: Tablet}},
		{"samsung tab", "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Safari/537.36",
			Info{Browser: "Samsung Browser", OS: "Android", Category: Tablet}},
		{"android phone", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
			Info{Browser: "Chrome", OS: "Android", Category: Mobile}},
		{"kindle fire", "Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/125.3.1 like Chrome/125.0.6422.165 Safari/537.36",
			Info{Browser: "Silk", OS: "Android", Category: Tablet}},
		{"android webview", "Mozilla/5.0 (Linux; Android 13; Pixel 7; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.0.0 Mobile Safari/537.36",
			Info{Browser: "Android Webview", OS: "Android", Category: Mobile}},
		{"uc browser", "Mozilla/5.0 (Linux; U; Android 10; en-US; RMX1911 Build/QKQ1.200209.002) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/78.0.3904.108 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
			Info{Browser: "UC Browser", OS: "Android", Category: Mobile}},
		{"viber's in-app browser is no bot", "Mozilla/5.0 (Linux; Android 12; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 Viber/22.3.0.0",
			Info{Browser: "Chrome", OS: "Android", Category: Mobile}},
		{"viber's link preview is", "Viber", Info{Browser: "Viber", Category: Other, Bot: true, BotName: "Viber"}},
		{"fire tv", "Mozilla/5.0 (Linux; Android 9; AFTMM) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
			Info{Browser: "Chrome", OS: "Android", Category: SmartTV}},
		{"lg webos tv", "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/94.0.4606.128 Safari/537.36 WebAppManager",
			Info{Browser: "Chrome", OS: "Linux", Category: SmartTV}},
		{"an unknown client names no browser", "Mozilla/5.0", Info{Category: Other}},
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

// Safari on an iPad sends a Mac's user agent; its screen, which a hit
// reports, is in portrait.
func TestWithScreen(t *testing.T) {
	mac := NewParser(1).Parse("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15")
	tests := []struct {
		sr       string
		category string
		os       string
	}{
		{"820x1180", Tablet, "iOS"},
		{"1024x1366", Tablet, "iOS"},
		{"1440x900", Desktop, "macOS"},
		{"", Desktop, "macOS"},
		{"axb", Desktop, "macOS"},
	}
	for _, tt := range tests {
		if got := mac.WithScreen(tt.sr); got.Category != tt.category || got.OS != tt.os || got.Browser != "Safari" {
			t.Errorf("WithScreen(%q) = %+v, want %s on %s", tt.sr, got, tt.category, tt.os)
		}
	}
	phone := Info{Browser: "Safari", OS: "iOS", Category: Mobile}
	if got := phone.WithScreen("390x844"); got != phone {
		t.Errorf("an iPhone became %+v", got)
	}
}

// TestWith: what a Measurement API request says of the visitor's device
// beats what its user agent tells, field by field; the bot flag stays the
// user agent's.
func TestWith(t *testing.T) {
	derived := Info{Browser: "Googlebot", Category: Other, Bot: true, BotName: "Googlebot"}
	tests := []struct {
		given, want Info
	}{
		{Info{}, derived},
		{Info{Category: Mobile}, Info{Browser: "Googlebot", Category: Mobile, Bot: true, BotName: "Googlebot"}},
		{Info{Browser: "Chrome", OS: "Android", Category: Tablet}, Info{Browser: "Chrome", OS: "Android", Category: Tablet, Bot: true, BotName: "Googlebot"}},
	}
	for _, tt := range tests {
		if got := derived.With(tt.given); got != tt.want {
			t.Errorf("With(%+v) = %+v, want %+v", tt.given, got, tt.want)
		}
	}
	for _, c := range []string{Desktop, Mobile, Tablet, SmartTV, Other} {
		if !ValidCategory(c) {
			t.Errorf("%q is not a valid category", c)
		}
	}
	for _, c := range []string{"", "phone", "Mobile", "smart_tv"} {
		if ValidCategory(c) {
			t.Errorf("%q is a valid category", c)
		}
	}
}
