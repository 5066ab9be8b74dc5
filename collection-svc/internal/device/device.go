// Package device describes the client of a hit from its user agent: browser,
// operating system, device category and whether it is a known crawler.
package device

import (
	"strings"
	"sync"

	"github.com/acme/analytics/collection-svc/internal/crawlers"
	"github.com/mileusna/useragent"
)

// Device categories, as reports show them (GA4's, with other for bots and
// what is none of these).
const (
	Desktop = "desktop"
	Mobile  = "mobile"
	Tablet  = "tablet"
	SmartTV = "smart tv"
	Other   = "other"
)

// Info is what a user agent tells.
type Info struct {
	Browser  string
	OS       string
	Category string
	Bot      bool
	BotName  string // the crawler list entry, or "" for a self-declared bot
}

// maxUALength bounds the user agent parsed; longer ones are cut (real ones
// are a few hundred bytes).
const maxUALength = 1024

// Parser parses user agents with a bounded cache: the user agents of one
// site's visitors are few, so most hits are a map lookup. Safe for
// concurrent use.
type Parser struct {
	crawlers *crawlers.Matcher
	mu       sync.RWMutex
	cache    map[string]Info
	max      int
}

// NewParser returns a parser caching up to max user agents (a full cache is
// emptied and starts over, which keeps it bounded without bookkeeping).
func NewParser(max int) *Parser {
	return &Parser{crawlers: crawlers.Default, cache: make(map[string]Info, 64), max: max}
}

// Parse describes ua.
func (p *Parser) Parse(ua string) Info {
	if len(ua) > maxUALength {
		ua = ua[:maxUALength]
	}
	p.mu.RLock()
	info, ok := p.cache[ua]
	p.mu.RUnlock()
	if ok {
		return info
	}
	info = p.parse(ua)
	p.mu.Lock()
	if len(p.cache) >= p.max {
		p.cache = make(map[string]Info, 64)
	}
	p.cache[ua] = info
	p.mu.Unlock()
	return info
}

func (p *Parser) parse(ua string) Info {
	if ua == "" {
		return Info{Category: Other}
	}
	u := useragent.Parse(ua)
	info := Info{Browser: u.Name, OS: u.OS}
	switch {
	case isTV(ua):
		info.Category = SmartTV
	case u.Tablet:
		info.Category = Tablet
	case u.OS == useragent.Android && !strings.Contains(ua, "Mobile"):
		// Android's own rule: browsers on phones say Mobile, on tablets
		// (Samsung Tab, Kindle Fire, Lenovo...) they do not.
		info.Category = Tablet
	case u.Mobile:
		info.Category = Mobile
	case u.Desktop:
		info.Category = Desktop
	default:
		info.Category = Other
	}
	info.Browser = browserName(ua, info.Browser)
	if name, ok := p.crawlers.Match(ua); ok && !inAppBrowser(name, ua) {
		info.Bot, info.BotName = true, name
	} else if u.Bot {
		info.Bot = true
	}
	if info.Bot {
		info.Category = Other
	}
	return info
}

// tvTokens mark the browsers of smart TVs and TV sticks (lower case).
var tvTokens = []string{"smart-tv", "smarttv", "googletv", "google tv", "android tv", "androidtv", "appletv",
	"bravia", "tizen", "web0s", "webos", "netcast", "hbbtv", "crkey", "roku", "; aft"}

func isTV(ua string) bool {
	lower := strings.ToLower(ua)
	for _, t := range tvTokens {
		if strings.Contains(lower, t) {
			return true
		}
	}
	return false
}

// browserName corrects the library's browser name where it is wrong for
// common clients, and keeps the dimension bounded: for a user agent it does
// not know, the library names the browser after the first token, whatever
// the sender put there ("Mozilla/5.0", "-", a whole string).
func browserName(ua, name string) string {
	switch {
	case strings.Contains(ua, "; wv)"):
		return "Android Webview"
	case strings.Contains(ua, "Silk/"):
		return "Silk"
	case strings.Contains(ua, "YaBrowser/"):
		return "YaBrowser"
	case strings.Contains(ua, "UCBrowser/"):
		return "UC Browser"
	case strings.Contains(ua, "SogouMobileBrowser/"):
		return "Sogou Browser"
	}
	if len(name) > 32 || name == "-" || strings.ContainsAny(name, "/();") {
		return ""
	}
	return name
}

// inAppBrowser reports a crawler-list match that is in fact an in-app
// browser people use: the list's entry is meant for the app's link-preview
// fetcher, whose user agent is not a browser's.
func inAppBrowser(name, ua string) bool {
	switch name {
	case "Viber":
		return strings.Contains(ua, "AppleWebKit/")
	case "Sogou":
		return strings.Contains(ua, "SogouMobileBrowser/")
	}
	return false
}

// ValidCategory reports whether c is one of the device categories
// reports show (Desktop, Mobile, Tablet, SmartTV, Other).
func ValidCategory(c string) bool {
	switch c {
	case Desktop, Mobile, Tablet, SmartTV, Other:
		return true
	}
	return false
}

// With returns i with the browser, OS and category given has in their
// place: what a Measurement API request says of the visitor's device
// beats what its user agent tells, field by field. The bot flag is the
// user agent's alone.
func (i Info) With(given Info) Info {
	if given.Browser != "" {
		i.Browser = given.Browser
	}
	if given.OS != "" {
		i.OS = given.OS
	}
	if given.Category != "" {
		i.Category = given.Category
	}
	return i
}

// WithScreen refines the category of a client from the screen size a hit
// reports (sr, width x height): Safari on an iPad (iPadOS 13 and later)
// sends the user agent of a Mac, but reports its screen in portrait, as a
// Mac's never is.
func (i Info) WithScreen(sr string) Info {
	if i.Category != Desktop || i.OS != useragent.MacOS {
		return i
	}
	if w, h, ok := Resolution(sr); ok && w > 0 && w < h {
		i.Category, i.OS = Tablet, useragent.IOS
	}
	return i
}

// Resolution reads a screen resolution as hits give it, "1920x1080":
// width and height of 1 to 6 digits each; ok is false for anything else.
func Resolution(sr string) (w, h int, ok bool) {
	ws, hs, ok := strings.Cut(sr, "x")
	w, h = atoi(ws), atoi(hs)
	return w, h, ok && w >= 0 && h >= 0
}

// atoi reads 1 to 6 decimal digits; -1 for anything else.
func atoi(s string) int {
	if s == "" || len(s) > 6 {
		return -1
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return -1
		}
		n = n*10 + int(s[i]-'0')
	}
	return n
}
