package attribution

import "strings"

// Category is a source category of GA4's default channel group.
type Category int

// Source categories.
const (
	CategoryNone Category = iota
	CategorySearch
	CategorySocial
	CategoryVideo
	CategoryShopping
)

// searchEngines maps the brand label of a search engine's host (the label
// before the public suffix, "google" in www.google.co.uk) to the source name
// a referral from it gets. Our own list, kept by hand: add engines as
// merchants' traffic shows them.
var searchEngines = map[string]string{
	"google":     "google",
	"bing":       "bing",
	"yahoo":      "yahoo",
	"duckduckgo": "duckduckgo",
	"baidu":      "baidu",
	"yandex":     "yandex",
	"ecosia":     "ecosia",
	"naver":      "naver",
	"seznam":     "seznam",
	"qwant":      "qwant",
	"ask":        "ask",
	"aol":        "aol",
	"startpage":  "startpage",
	"sogou":      "sogou",
	"so":         "360.cn",
	"daum":       "daum",
	"coccoc":     "coccoc",
	"mojeek":     "mojeek",
	"dogpile":    "dogpile",
	"yippy":      "yippy",
	"onet":       "onet",
	"rambler":    "rambler",
}

// searchHosts are search engines whose host is not brand.tld.
var searchHosts = map[string]string{
	"search.brave.com":   "brave",
	"search.yahoo.com":   "yahoo",
	"search.aol.com":     "aol",
	"search.naver.com":   "naver",
	"m.search.naver.com": "naver",
	"go.mail.ru":         "mail.ru",
	"search.seznam.cz":   "seznam",
	"kagi.com":           "kagi",
}

// notSearch are hosts under a search engine's brand domain that are not
// its search (mail, accounts, documents): a referral from one is a
// referral (mail.google.com / referral, as in GA), not organic search.
// Hosts of a search brand with another category (sites.google.com is
// social) are in categoryNames instead.
var notSearch = map[string]bool{
	"mail.google.com": true, "accounts.google.com": true, "docs.google.com": true, "drive.google.com": true,
	"mail.yahoo.com": true, "mail.yandex.ru": true, "mail.yandex.com": true, "mail.aol.com": true, "mail.naver.com": true,
}

// categoryNames maps source names and registrable domains to their
// category. A source matches when it equals an entry or is a subdomain of a
// domain entry (m.facebook.com matches facebook.com).
var categoryNames = map[string]Category{
	// Search: the brand names above are matched separately.
	"brave": CategorySearch, "kagi": CategorySearch, "360.cn": CategorySearch, "mail.ru": CategorySearch,

	// Social.
	"facebook": CategorySocial, "facebook.com": CategorySocial, "fb": CategorySocial, "fb.com": CategorySocial, "fb.me": CategorySocial,
	"instagram": CategorySocial, "instagram.com": CategorySocial, "ig": CategorySocial,
	"twitter": CategorySocial, "twitter.com": CategorySocial, "t.co": CategorySocial, "x.com": CategorySocial,
	"linkedin": CategorySocial, "linkedin.com": CategorySocial, "lnkd.in": CategorySocial,
	"pinterest": CategorySocial, "pinterest.com": CategorySocial, "pin.it": CategorySocial,
	"reddit": CategorySocial, "reddit.com": CategorySocial, "redd.it": CategorySocial,
	"tiktok": CategorySocial, "tiktok.com": CategorySocial,
	"snapchat": CategorySocial, "snapchat.com": CategorySocial,
	"tumblr": CategorySocial, "tumblr.com": CategorySocial,
	"vk": CategorySocial, "vk.com": CategorySocial, "ok.ru": CategorySocial,
	"weibo": CategorySocial, "weibo.com": CategorySocial,
	"quora": CategorySocial, "quora.com": CategorySocial,
	"threads": CategorySocial, "threads.net": CategorySocial,
	"discord": CategorySocial, "discord.com": CategorySocial, "discord.gg": CategorySocial,
	"telegram": CategorySocial, "t.me": CategorySocial, "telegram.org": CategorySocial,
	"whatsapp": CategorySocial, "whatsapp.com": CategorySocial, "wa.me": CategorySocial,
	"messenger": CategorySocial, "messenger.com": CategorySocial,
	"line": CategorySocial, "line.me": CategorySocial,
	"wechat": CategorySocial, "wechat.com": CategorySocial,
	"xing": CategorySocial, "xing.com": CategorySocial,
	"mastodon": CategorySocial, "mastodon.social": CategorySocial,
	"bsky": CategorySocial, "bsky.app": CategorySocial,
	"news.ycombinator.com": CategorySocial, "hacker news": CategorySocial,
	"medium.com": CategorySocial, "meetup.com": CategorySocial, "slack.com": CategorySocial,
	"stackoverflow.com": CategorySocial, "stackexchange.com": CategorySocial,
	// Under search brands: social, not search.
	"sites.google.com": CategorySocial, "groups.google.com": CategorySocial,
	"blog.naver.com": CategorySocial, "cafe.naver.com": CategorySocial, "answers.yahoo.com": CategorySocial,

	// Video.
	"youtube": CategoryVideo, "youtube.com": CategoryVideo, "youtu.be": CategoryVideo,
	"vimeo": CategoryVideo, "vimeo.com": CategoryVideo,
	"dailymotion": CategoryVideo, "dailymotion.com": CategoryVideo,
	"twitch": CategoryVideo, "twitch.tv": CategoryVideo,
	"wistia": CategoryVideo, "wistia.com": CategoryVideo,
	"netflix": CategoryVideo, "netflix.com": CategoryVideo,
	"bilibili": CategoryVideo, "bilibili.com": CategoryVideo,
	"youku": CategoryVideo, "youku.com": CategoryVideo,
	"iqiyi": CategoryVideo, "iqiyi.com": CategoryVideo,
	"disneyplus": CategoryVideo, "disneyplus.com": CategoryVideo,
	"hulu": CategoryVideo, "hulu.com": CategoryVideo,
	"rumble.com": CategoryVideo,

	// Shopping.
	"amazon": CategoryShopping, "amazon.com": CategoryShopping,
	"ebay": CategoryShopping, "ebay.com": CategoryShopping,
	"etsy": CategoryShopping, "etsy.com": CategoryShopping,
	"walmart": CategoryShopping, "walmart.com": CategoryShopping,
	"shopify": CategoryShopping, "shopify.com": CategoryShopping, "shop.app": CategoryShopping,
	"alibaba": CategoryShopping, "alibaba.com": CategoryShopping,
	"aliexpress": CategoryShopping, "aliexpress.com": CategoryShopping,
	"target.com": CategoryShopping, "bestbuy.com": CategoryShopping,
	"mercadolibre": CategoryShopping, "mercadolibre.com": CategoryShopping,
	"rakuten": CategoryShopping, "rakuten.com": CategoryShopping,
	"zalando": CategoryShopping, "wayfair.com": CategoryShopping,
	"temu": CategoryShopping, "temu.com": CategoryShopping,
	"shein": CategoryShopping, "shein.com": CategoryShopping,
	"google shopping": CategoryShopping, "shopping.google.com": CategoryShopping,
	"shopping.yahoo.com": CategoryShopping, "shopping.naver.com": CategoryShopping,
	"igshopping": CategoryShopping,
}

// SourceCategory returns the category of a source name or host.
func SourceCategory(source string) Category {
	s := normalizeHost(source)
	if s == "" {
		return CategoryNone
	}
	if _, ok := searchName(s); ok {
		return CategorySearch
	}
	c, _ := listedCategory(s)
	return c
}

// listedCategory returns the category categoryNames gives s, itself or
// as a subdomain of an entry, and whether it gives one.
func listedCategory(s string) (Category, bool) {
	if c, ok := categoryNames[s]; ok {
		return c, true
	}
	for i := strings.IndexByte(s, '.'); i >= 0; i = strings.IndexByte(s, '.') {
		s = s[i+1:]
		if !strings.Contains(s, ".") {
			break // a bare TLD is no category
		}
		if c, ok := categoryNames[s]; ok {
			return c, true
		}
	}
	return CategoryNone, false
}

// searchName returns the source name of a search engine for a host or a
// source name, and whether it is one. A host is one when it is listed
// (searchHosts) or its brand label is a search engine's (www.google.co.uk),
// unless it is one of the brand's other services (notSearch, or a host
// categoryNames gives another category: sites.google.com).
func searchName(s string) (string, bool) {
	if n, ok := searchHosts[s]; ok {
		return n, true
	}
	if !strings.Contains(s, ".") {
		// A bare source name (utm_source=google) must be the brand itself.
		for _, n := range searchEngines {
			if s == n {
				return n, true
			}
		}
		return "", false
	}
	if notSearch[s] {
		return "", false
	}
	if c, ok := listedCategory(s); ok && c != CategorySearch {
		return "", false
	}
	if n, ok := searchEngines[brandLabel(s)]; ok {
		return n, true
	}
	return "", false
}

// brandLabel returns the label before the public suffix: "google" for
// www.google.co.uk and google.de, "bing" for bing.com. It knows the common
// two-label suffixes (co.uk, com.au...) rather than the whole public suffix
// list, which is enough for the brands we match.
func brandLabel(host string) string {
	labels := strings.Split(host, ".")
	n := len(labels)
	if n < 2 {
		return host
	}
	if n >= 3 {
		sl := labels[n-2]
		if len(labels[n-1]) == 2 && (sl == "co" || sl == "com" || sl == "ac" || sl == "or" || sl == "ne" || sl == "gov" || sl == "org" || sl == "net") {
			return labels[n-3]
		}
	}
	return labels[n-2]
}

// normalizeHost lowercases, trims and drops a leading "www.".
func normalizeHost(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.TrimPrefix(s, "www.")
}
