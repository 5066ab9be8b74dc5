// Package device describes the client of a hit from its user agent: browser,
// operating system, device category and whether it is a known crawler.
package device

import (
	"sync"

	"github.com/acme/analytics/collection-svc/internal/crawlers"
	"github.com/mileusna/useragent"
)

// Device categories, as reports show them.
const (
	Desktop = "desktop"
	Mobile  = "mobile"
	Tablet  = "tablet"
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
	case u.Tablet:
		info.Category = Tablet
	case u.Mobile:
		info.Category = Mobile
	case u.Desktop:
		info.Category = Desktop
	default:
		info.Category = Other
	}
	if name, ok := p.crawlers.Match(ua); ok {
		info.Bot, info.BotName = true, name
	} else if u.Bot {
		info.Bot = true
	}
	if info.Bot {
		info.Category = Other
	}
	return info
}
