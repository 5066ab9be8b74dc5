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

// Which sources are search, social, video and shopping sites follows
// Google's published source-category list (the one GA4's default channel
// group uses), written out here our own way: each site once, with the
// source names it is tagged with and its domains. The list matches a source
// exactly; we match a domain's subdomains too (de-de.facebook.com is
// facebook.com), a brand spread over country domains on all of them
// (pinterest.*), and the portals whose subdomains are different services
// (yahoo.com, naver.com) by their subdomains. docs/processing.md says what
// is covered and how it was checked; every exception to Google's list is
// marked "not in Google's list" with its reason.
//
// In the site lists below, a string is one site: its source names (no dot),
// its domains (each with its subdomains) and its brands ("pinterest.*":
// pinterest.com, pinterest.de, pinterest.co.uk... and their subdomains).

// searchSites are the search sites other than the engines and portals
// below (portals, countryBrands), whose referrals keep their host as
// source (ntp.msn.com / referral) and are Organic Search by category.
var searchSites = []string{
	// Names GA4 gives search engines: a source so named is search, their
	// hosts (cnn.com, lycos.com) are not in Google's list.
	"alice", "auone", "avg", "babylon", "cnn", "comcast", "conduit", "eniro", "globo", "google-play", "incredimail",
	"kvasir", "lycos", "najdi", "search-results", "terra", "ukr", "virgilio",
	"biglobe biglobe.ne.jp biglobe.co.jp",
	"centrum.cz", "firmy.cz",
	"exalead.com",
	"excite.com",
	"msn msn.com", // ntp.msn.com: the new-tab page of Edge
	"rakuten rakuten.co.jp",
	"search.smt.docomo.ne.jp",
	"sp-web.search.auone.jp",
	"startsiden startsiden.no",
	"search.ukr.net", "secureurl.ukr.net",
	"tut.by",
	"360.cn",
}

// socialSites are the social networks, forums, blogs, review, bookmarking
// and link-shortening sites.
var socialSites = []string{
	"social", // the source name itself
	"43things 43things.com", "51.com", "5ch.net",
	"academia.edu", "activerain activerain.com", "activeworlds activeworlds.com", "addthis addthis.com", "airg.ca",
	"allnurses.com", "allrecipes.com", "alumniclass alumniclass.com", "ameba.jp ameblo.jp", "americantowns americantowns.com",
	"ancestry.com", "anobii anobii.com", "answerbag answerbag.com", "aolanswers aolanswers.com", "artstation.com",
	"askubuntu askubuntu.com", "asmallworld.com", "athlinks athlinks.com", "awe.sm",
	"baby-gaga baby-gaga.com", "babyblog.ru", "badoo badoo.com", "bebo bebo.com", "beforeitsnews beforeitsnews.com",
	"bharatstudent bharatstudent.com", "biip.no", "biswap.org", "bit.ly", "blackcareernetwork.com", "blackplanet blackplanet.com",
	"blip.fm", "blog.com", "blogg.no", "bloggang.com", "blogger blogger.com", "blogher blogher.com", "bloglines bloglines.com",
	"blogs.com", "blogsome blogsome.com", "blogspot blogspot.com", "blogster blogster.com", "blurtit blurtit.com",
	"brightkite brightkite.com", "brizzly brizzly.com", "buzzfeed buzzfeed.com", "buzznet buzznet.com",
	"cafemom cafemom.com", "camospace camospace.com", "canalblog.com", "care.com", "care2 care2.com", "caringbridge.org",
	"catster catster.com", "cbnt.io", "cellufun cellufun.com", "centerblog.net", "chegg.com", "chicagonow chicagonow.com",
	"classmates classmates.com", "classquest classquest.com", "cocolog-nifty cocolog-nifty.com", "copainsdavant.linternaute.com",
	"couchsurfing.org", "cozycot cozycot.com", "cross.tv", "crunchyroll crunchyroll.com", "cyworld cyworld.com",
	"dailystrength.org", "deluxe.com", "deviantart deviantart.com", "dianping dianping.com", "digg digg.com", "diigo diigo.com",
	"disqus disqus.com", "dogster dogster.com", "dol2day dol2day.com", "doostang doostang.com", "dopplr dopplr.com",
	"douban douban.com", "draugiem.lv", "drugs-forum drugs-forum.com", "dzone dzone.com",
	"edublogs.org", "elftown elftown.com", "epicurious.com", "everforo.com", "exblog.jp", "extole extole.com",
	"facebook fb facebook.com fb.me",
	"fb.com", // not in Google's list: facebook's other domain
	"faceparty faceparty.com", "fandom.com", "fanpop fanpop.com", "fark fark.com", "fc2 fc2.com",
	"feedspot blog.feedspot.com", "feministing feministing.com", "filmaffinity filmaffinity.com", "flickr flickr.com",
	"flipboard flipboard.com", "folkdirect folkdirect.com", "foodservice foodservice.com",
	"forums.androidcentral.com", "forums.crackberry.com", "forums.imore.com", "forums.webosnation.com", "forums.wpcentral.com",
	"fotki fotki.com", "fotolog fotolog.com", "foursquare foursquare.com", "friendfeed friendfeed.com", "fruehstueckstreff.org",
	"fubar fubar.com",
	"gaiaonline gaiaonline.com", "gamerdna gamerdna.com", "gather.com", "geni.com", "getpocket.com pocket.co",
	"glassboard glassboard.com", "glassdoor glassdoor.com", "godtube godtube.com", "goldenline.pl", "goldstar goldstar.com",
	"goo.gl", "gooblog blog.goo.ne.jp oshiete.goo.ne.jp", "goodreads goodreads.com", "google+ googleplus googlegroups.com",
	"govloop govloop.com", "gowalla gowalla.com", "gree.jp", "gulli.com", "gutefrage.net",
	"habbo habbo.com", "hatena b.hatena.ne.jp d.hatena.ne.jp", "hi5 hi5.com", "hootsuite hootsuite.com", "houzz houzz.com",
	"hoverspot hoverspot.com", "hr.com", "hubculture hubculture.com", "hubpages.com", "hyves.net hyves.nl",
	"ibibo ibibo.com", "identi.ca", "imageshack imageshack.com imageshack.us", "imvu imvu.com", "insanejournal insanejournal.com",
	"instagram ig instagram.com", "instapaper instapaper.com", "internations.org", "interpals.net", "intherooms intherooms.com",
	"irc-galleria.net", "is.gd", "italki italki.com",
	"jammerdirect jammerdirect.com", "jappy.com jappy.de",
	"kaboodle.com", "kakao kakao.com kakaocorp.com", "kaneva kaneva.com",
	"last.fm", "librarything librarything.com", "line line.me", "linkedin linkedin.com lnkd.in", "listal listal.com",
	"listography listography.com", "livedoorblog livedoor.com", "livejournal livejournal.com",
	"mbga.jp yahoo-mbga.jp", "medium.com", "meetin.org", "meetup meetup.com", "meinvz.net studivz.net", "meneame.net", "menuism.com",
	"messenger messenger.com", "mix.com", "mixi.jp", "mocospace mocospace.com", "mouthshut mouthshut.com",
	"movabletype movabletype.com", "mubi mubi.com", "my.opera.com", "myanimelist.net", "myheritage myheritage.com",
	"mylife mylife.com", "mymodernmet mymodernmet.com", "myspace myspace.com",
	"netvibes netvibes.com", "news.ycombinator.com", "newsshowcase", "nexopia forums.nexopia.com", "ngopost.org",
	"niconico nicovideo.jp", "nightlifelink nightlifelink.com", "ning ning.com",
	"odnoklassniki.*", "ok.ru", // ok.ru is not in Google's list: it is odnoklassniki's domain now
	"okwave.jp", "oneworldgroup.org", "onstartups onstartups.com", "opendiary opendiary.com", "over-blog.com overblog.com",
	"paper.li", "partyflock.nl", "photobucket photobucket.com", "pinboard pinboard.in", "pingsta pingsta.com",
	"pinterest pinterest.*",
	"pin.it", // not in Google's list: pinterest's short links
	"pixiv.net", "playahead.se", "plurk plurk.com", "posterous posterous.com", "pro.homeadvisor.com",
	"qapacity qapacity.com", "quechup quechup.com", "quora quora.com", "qzone.qq.com",
	"ravelry ravelry.com", "reddit reddit.com",
	"redd.it", // not in Google's list: reddit's short links
	"redux redux.com", "renren renren.com", "researchgate.net", "reunion reunion.com", "reverbnation reverbnation.com",
	"rtl.de", "ryze ryze.com",
	"salespider salespider.com", "scoop.it", "screenrant screenrant.com", "scribd scribd.com", "scvngr scvngr.com",
	"secondlife secondlife.com", "serverfault serverfault.com", "shareit ushareit.com", "sharethis sharethis.com", "shvoong.com",
	"skype web.skype.com", "skyrock skyrock.com", "slashdot.org", "slideshare.net", "smartnews.com", "snapchat snapchat.com",
	"sociallife.com.br", "socialvibe socialvibe.com", "spaces.live.com", "spoke spoke.com", "spruz spruz.com", "ssense.com",
	"stackapps stackapps.com", "stackexchange stackexchange.com", "stackoverflow stackoverflow.com", "stardoll.com",
	"stickam stickam.com", "suomi24.fi", "superuser superuser.com", "sweeva sweeva.com",
	"t.me",
	"telegram.org", // not in Google's list: telegram's own domain (web.telegram.org), whose t.me links are listed
	"tagged tagged.com", "taggedmail taggedmail.com", "talkbiznow talkbiznow.com", "taringa.net", "techmeme techmeme.com",
	"tencent tencent.com", "tiktok tiktok.com", "tinyurl tinyurl.com", "toolbox toolbox.com",
	"travellerspoint travellerspoint.com", "tripadvisor tripadvisor.com", "trombi trombi.com", "trustpilot",
	"tudou tudou.com", "tuenti tuenti.com", "tumblr tumblr.com", "tweetdeck tweetdeck.com", "twitter twitter.com t.co",
	"x.com", // not in Google's list: twitter's domain since 2024
	"twoo.com", "typepad typepad.com",
	"unblog.fr", "urbanspoon.com", "ushi.cn",
	"vampirefreaks vampirefreaks.com", "vampirerave vampirerave.com", "vg.no", "video.ibm.com", "vk.com vkontakte.ru",
	"wakoopa wakoopa.com", "wattpad wattpad.com", "webshots webshots.com", "wechat wechat.com", "weebly weebly.com",
	"weibo weibo.com", "wer-weiss-was.de", "weread weread.com", "whatsapp whatsapp.com",
	"wa.me", // not in Google's list: whatsapp's short links
	"wiki.answers.com", "wikihow.com", "wikitravel.org", "woot.com", "wordpress wordpress.com wordpress.org",
	"xanga xanga.com", "xing xing.com",
	"yammer yammer.com", "yelp yelp.*", "youroom.in",
	"zalo chat.zalo.me", "zoo.gr", "zooppa zooppa.com",
}

// videoSites are the video sites.
var videoSites = []string{
	"crackle crackle.com", "curiositystream curiositystream.com", "d.tube", "dailymotion dailymotion.com",
	"disneyplus disneyplus.com", "hulu hulu.com", "iqiyi iqiyi.com iq.com", "justin.tv", "netflix netflix.com",
	"ted ted.com", "twitch twitch.tv", "utreon utreon.com", "veoh veoh.com", "viadeo.journaldunet.com", "vimeo vimeo.com",
	"wistia wistia.com fast.wistia.net", "youku youku.com", "youtube youtube.com",
	"youtu.be", // not in Google's list: youtube's short links
}

// shoppingSites are the marketplaces, shop platforms and payment pages.
var shoppingSites = []string{
	"igshopping", // and "google shopping", in buildIndex
	"alibaba alibaba.com", "amazon amazon.*", "aax.amazon-adsystem.com aax-us-east.amazon-adsystem.com",
	"ebay ebay.*", "etsy etsy.com", "mercadolibre mercadolibre.*", "shop.app", "shopify shopify.com",
	"shopping.net", // nl.shopping.net, uk.shopping.net...
	"shopzilla shopzilla.com", "simplycodes.com", "stripe stripe.com", "walmart walmart.com",
}

// site says the category of a domain's hosts.
type site struct {
	cat Category // the domain itself and www.
	// subs are subdomains of another category than rest, each with its own
	// subdomains (m.blog.naver.com is blog).
	subs map[string]Category
	rest Category // any other subdomain
	// engine is the source name a referral from the site's search hosts
	// gets (google.de is "google").
	engine string
}

// searchUnnamed, in a site's subs, is a host Google files as search that
// is not the engine's search: a referral from it keeps its host as source
// (mail.yandex.ru / referral), its channel Organic Search all the same.
const searchUnnamed Category = -1

// whole is a site all of whose hosts are of one category.
func whole(c Category) *site { return &site{cat: c, rest: c} }

// searchEngine is a site that is search throughout, named engine.
func searchEngine(engine string) *site {
	return &site{cat: CategorySearch, rest: CategorySearch, engine: engine}
}

// portals are domains of search engines and of sites whose hosts are not all
// of one category. A deeper domain listed in a site list wins over its
// parent here. Some engines' hosts (bing.com, duckduckgo.com, ask.com) are
// not in Google's list, which has their names instead: GA4 names a referral
// from them by the engine ("bing"), as we do.
var portals = map[string]*site{
	// Yahoo's front pages and search (xx.search.yahoo.com) are search,
	// its answers and bookmarks social; its other services
	// (news.yahoo.com, mail) are not in Google's list.
	"yahoo.com": {cat: CategorySearch, engine: "yahoo", subs: map[string]Category{
		"search":  CategorySearch,
		"answers": CategorySocial, "bookmarks": CategorySocial, "pulse": CategorySocial,
		"shopping": CategoryShopping,
	}},
	"yahoo.co.jp": {cat: CategorySearch, engine: "yahoo", subs: map[string]Category{
		"search": CategorySearch,
		"blog":   CategorySocial, "bookmarks": CategorySocial, "chiebukuro": CategorySocial, "messages": CategorySocial,
		"shopping": CategoryShopping,
	}},
	"naver.com": {cat: CategorySearch, engine: "naver", subs: map[string]Category{
		"m": CategorySearch, "search": CategorySearch,
		"blog": CategorySocial, "cafe": CategorySocial, "kin": CategorySocial, // kin: naver's questions and answers
		"shopping": CategoryShopping,
	}},
	"baidu.com":      {cat: CategorySearch, engine: "baidu", subs: map[string]Category{"m": CategorySearch}},
	"bing.com":       searchEngine("bing"),
	"duckduckgo.com": searchEngine("duckduckgo"),
	"ecosia.org":     searchEngine("ecosia"),
	"qwant.com":      searchEngine("qwant"),
	"sogou.com":      searchEngine("sogou"),
	"so.com":         searchEngine("360.cn"),
	"ask.com":        searchEngine("ask"),
	"dogpile.com":    searchEngine("dogpile"),
	"seznam.cz":      searchEngine("seznam"), // email.seznam.cz is search to Google too
	"go.mail.ru":     searchEngine("mail.ru"),
	"daum.net":       searchEngine("daum"),
	"onet.pl":        searchEngine("onet"),
	"rambler.ru":     searchEngine("rambler"),
	// Buckets under s3.amazonaws.com are other sites.
	"s3.amazonaws.com": {cat: CategoryShopping},
}

// countryBrands are sites spread over country domains (google.de,
// google.co.uk, google.com.au), matched by the label before the country
// suffix, whose hosts are not all of one category ("pinterest.*" in a
// site list is one whose hosts are).
var countryBrands = map[string]*site{
	"google": {cat: CategorySearch, engine: "google", subs: map[string]Category{
		"search": CategorySearch, "lens": CategorySearch, "news": CategorySearch, "play": CategorySearch,
		"sites": CategorySocial, "groups": CategorySocial, "plus": CategorySocial, "plus.url": CategorySocial,
		"messages": CategorySocial,
		"shopping": CategoryShopping, // not in Google's list by host: it is "Google Shopping"'s
	}},
	// All of yandex is search to Google, its mail too.
	"yandex": {cat: CategorySearch, rest: CategorySearch, engine: "yandex", subs: map[string]Category{"mail": searchUnnamed}},
	"aol": {engine: "aol", subs: map[string]Category{
		"search": CategorySearch, "suche": CategorySearch, "lifestream": CategorySocial,
	}},
}

// sourceNames are the source names of a category, matched exactly;
// domains and brandSites the sites, by domain and by brand.
var sourceNames, domains, brandSites = buildIndex()

// buildIndex indexes the site lists, portals and brands. A name, domain or
// brand listed twice is a mistake in the lists: it panics.
func buildIndex() (names map[string]Category, doms, brands map[string]*site) {
	names, doms, brands = map[string]Category{}, map[string]*site{}, map[string]*site{}
	addName := func(n string, c Category) {
		if _, dup := names[n]; dup {
			panic("attribution: source name " + n + " listed twice")
		}
		names[n] = c
	}
	addSite := func(m map[string]*site, k string, s *site) {
		if _, dup := m[k]; dup {
			panic("attribution: site " + k + " listed twice")
		}
		m[k] = s
	}
	for d, s := range portals {
		addSite(doms, d, s)
	}
	for b, s := range countryBrands {
		addSite(brands, b, s)
	}
	for _, m := range []map[string]*site{portals, countryBrands} {
		for _, s := range m {
			// A name our attribution gives organic search is a search
			// source (not in Google's list: ecosia, mail.ru). One site may
			// have two domains (yahoo.com, yahoo.co.jp).
			if _, done := names[s.engine]; s.engine != "" && !done {
				addName(s.engine, CategorySearch)
			}
		}
	}
	addName("google shopping", CategoryShopping) // the one name with a space
	for _, l := range []struct {
		cat   Category
		sites []string
	}{{CategorySearch, searchSites}, {CategorySocial, socialSites}, {CategoryVideo, videoSites}, {CategoryShopping, shoppingSites}} {
		all := whole(l.cat)
		for _, st := range l.sites {
			for _, tok := range strings.Fields(st) {
				switch {
				case strings.HasSuffix(tok, ".*"):
					addSite(brands, strings.TrimSuffix(tok, ".*"), all)
				case strings.Contains(tok, "."):
					addSite(doms, tok, all)
				default:
					addName(tok, l.cat)
				}
			}
		}
	}
	return names, doms, brands
}

// SourceCategory returns the category of a source name or host.
func SourceCategory(source string) Category {
	s := normalizeHost(source)
	if c, ok := sourceNames[s]; ok {
		return c
	}
	c, _ := hostCategory(s)
	return c
}

// searchName returns the source name of a search engine for a referrer
// host, and whether it is one of an engine's search hosts: google.co.uk is
// "google", but not mail.google.com (a referral) nor sites.google.com
// (social), nor an intranet host without a dot.
func searchName(s string) (string, bool) {
	if c, name := hostCategory(s); c == CategorySearch && name != "" {
		return name, true
	}
	return "", false
}

// hostCategory returns the category of a host and, when it is one of a
// search engine's search hosts, the engine's name. The deepest listed
// domain of the host decides, else its brand on a country domain.
func hostCategory(h string) (Category, string) {
	for d := h; strings.Contains(d, "."); { // a bare TLD is no site
		if s, ok := domains[d]; ok {
			return s.category(subdomain(h, d))
		}
		d = d[strings.IndexByte(d, '.')+1:]
	}
	if sub, brand, ok := countryDomain(h); ok {
		if s, ok := brandSites[brand]; ok {
			return s.category(sub)
		}
	}
	return CategoryNone, ""
}

// category returns the category of the site's subdomain sub ("" for the
// domain itself) and, for a search host, the engine's name.
func (s *site) category(sub string) (Category, string) {
	c := s.rest
	if sub == "" || sub == "www" {
		c = s.cat
	} else {
		for x := sub; ; {
			if sc, ok := s.subs[x]; ok {
				c = sc
				break
			}
			i := strings.IndexByte(x, '.')
			if i < 0 {
				break
			}
			x = x[i+1:]
		}
	}
	switch c {
	case searchUnnamed:
		return CategorySearch, ""
	case CategorySearch:
		return c, s.engine
	}
	return c, ""
}

// subdomain returns the labels of host before its domain d: "m" for
// m.facebook.com in facebook.com, "" for the domain itself.
func subdomain(host, d string) string {
	if len(host) == len(d) {
		return ""
	}
	return host[:len(host)-len(d)-1]
}

// countryDomain splits a host on a country domain into its subdomain and
// brand: "maps", "google" for maps.google.co.uk. A country domain ends in
// .com, a two-letter country code, or a country's second level (co.uk,
// com.au, ne.jp); the whole public suffix list is not needed for the brands
// we match.
func countryDomain(h string) (sub, brand string, ok bool) {
	i := strings.LastIndexByte(h, '.')
	if i <= 0 {
		return "", "", false
	}
	tld, rest := h[i+1:], h[:i]
	if tld != "com" && len(tld) != 2 {
		return "", "", false
	}
	if len(tld) == 2 {
		if j := strings.LastIndexByte(rest, '.'); j >= 0 {
			switch rest[j+1:] {
			case "co", "com", "ne", "or", "ac", "gov", "org", "net":
				rest = rest[:j]
			}
		}
	}
	if j := strings.LastIndexByte(rest, '.'); j >= 0 {
		return rest[:j], rest[j+1:], true
	}
	return "", rest, true
}

// normalizeHost lowercases, trims and drops a leading "www.".
func normalizeHost(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.TrimPrefix(s, "www.")
}
