package attribution

import (
	"strings"
	"testing"
)

// The disagreements with Google's source-category list an audit found,
// each as the channel a session gets: from the host as referrer (an
// organic visit), or from the name as utm_source with a paid medium.
func TestSourceCategoryAuditCases(t *testing.T) {
	tests := []struct {
		name, source string
		want         string
	}{
		// Country domains of brands Google lists on several of them.
		{"pinterest de", "pinterest.de", OrganicSocial},
		{"pinterest uk", "pinterest.co.uk", OrganicSocial},
		{"pinterest country subdomain", "br.pinterest.com", OrganicSocial},
		{"amazon uk", "amazon.co.uk", OrganicShopping},
		{"amazon de", "amazon.de", OrganicShopping},
		{"ebay de", "ebay.de", OrganicShopping},
		{"ebay uk", "ebay.co.uk", OrganicShopping},
		{"ebay au", "ebay.com.au", OrganicShopping},
		{"mercadolibre ar", "mercadolibre.com.ar", OrganicShopping},
		{"mercadolibre mx", "articulo.mercadolibre.com.mx", OrganicShopping},
		{"yelp uk", "yelp.co.uk", OrganicSocial},
		// Search sites we missed.
		{"msn", "msn.com", OrganicSearch},
		{"edge new tab", "ntp.msn.com", OrganicSearch},
		{"excite", "excite.com", OrganicSearch},
		{"seznam mail", "email.seznam.cz", OrganicSearch},
		{"yandex mail", "mail.yandex.ru", OrganicSearch},
		{"yandex zen", "zen.yandex.ru", OrganicSearch},
		{"rakuten japan", "rakuten.co.jp", OrganicSearch},
		{"google news", "news.google.com", OrganicSearch},
		// Social sites we missed.
		{"bitly", "bit.ly", OrganicSocial},
		{"tinyurl", "tinyurl.com", OrganicSocial},
		{"blogspot", "blogspot.com", OrganicSocial},
		{"a blog on blogspot", "shoes.blogspot.com", OrganicSocial},
		{"wordpress", "wordpress.com", OrganicSocial},
		{"flickr", "flickr.com", OrganicSocial},
		{"yelp", "m.yelp.com", OrganicSocial},
		{"tripadvisor", "tripadvisor.com", OrganicSocial},
		{"disqus", "disqus.com", OrganicSocial},
		{"digg", "digg.com", OrganicSocial},
		{"slideshare", "slideshare.net", OrganicSocial},
		{"crunchyroll is social, not video", "crunchyroll.com", OrganicSocial},
		// A search brand's services of other categories.
		{"naver questions", "kin.naver.com", OrganicSocial},
		{"naver questions mobile", "m.kin.naver.com", OrganicSocial},
		{"yahoo bookmarks", "bookmarks.yahoo.com", OrganicSocial},
		{"yahoo japan shopping", "store.shopping.yahoo.co.jp", OrganicShopping},
		{"google plus", "plus.url.google.com", OrganicSocial},
		{"aol lifestream", "lifestream.aol.com", OrganicSocial},
		// Not in Google's list: referrals, as GA4 has them.
		{"ask.fm is not ask", "ask.fm", Referral},
		{"yahoo news", "news.yahoo.com", Referral},
		{"yahoo germany portal", "de.yahoo.com", Referral},
		{"aol portal", "aol.com", Referral},
		{"so.de is not so.com", "so.de", Referral},
		{"baidu encyclopedia", "baike.baidu.com", Referral},
		{"google translate", "translate.google.com", Referral},
		{"mail.ru webmail", "e.mail.ru", Referral},
		{"brave", "search.brave.com", Referral},
		{"kagi", "kagi.com", Referral},
		{"startpage", "startpage.com", Referral},
		{"mojeek", "mojeek.com", Referral},
		{"coccoc", "coccoc.com", Referral},
		{"yippy", "yippy.com", Referral},
		{"rakuten us", "rakuten.com", Referral},
		{"trustpilot host", "trustpilot.com", Referral}, // only the name is listed
		{"cnn host", "cnn.com", Referral},               // only the name is listed
		{"threads", "threads.net", Referral},
		{"aliexpress", "aliexpress.com", Referral},
		{"s3 bucket", "shop-assets.s3.amazonaws.com", Referral},
		{"a lookalike", "facebook.com.evil.example", Referral},
		// Still as before.
		{"google uk", "google.co.uk", OrganicSearch},
		{"yahoo search", "uk.search.yahoo.com", OrganicSearch},
		{"facebook", "de-de.facebook.com", OrganicSocial},
		{"google sites", "sites.google.com", OrganicSocial},
		{"google mail", "mail.google.com", Referral},
		{"youtube music", "music.youtube.com", OrganicVideo},
		{"twitch player", "player.twitch.tv", OrganicVideo},
		{"shopify checkout", "checkout.shopify.com", OrganicShopping},
		// Names, tagged with a paid medium.
		{"cnn name", "cnn", PaidSearch},
		{"comcast name", "comcast", PaidSearch},
		{"lycos name", "lycos", PaidSearch},
		{"msn name", "msn", PaidSearch},
		{"rakuten name", "rakuten", PaidSearch},
		{"trustpilot name", "trustpilot", PaidSocial},
		{"blogspot name", "blogspot", PaidSocial},
		{"google plus name", "google+", PaidSocial},
		{"google play name", "google-play", PaidSearch},
		{"instagram shopping name", "IGShopping", PaidShopping},
		{"google shopping name", "Google Shopping", PaidShopping},
		{"ecosia name, ours", "ecosia", PaidSearch},
		{"brave name", "brave", PaidOther},
		{"kagi name", "kagi", PaidOther},
		{"vk name", "vk", PaidOther},
		{"zalando name", "zalando", PaidOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			if strings.Contains(tt.source, ".") {
				tc := Attribute(Campaign{}, "https://"+tt.source+"/", nil)
				got = DefaultChannel(tc.Source, tc.Medium, tc.Campaign)
			} else {
				got = DefaultChannel(tt.source, "cpc", "")
			}
			if got != tt.want {
				t.Errorf("%s: channel %q, want %q", tt.source, got, tt.want)
			}
		})
	}
}

// A search engine's search hosts are named by the engine, as our reports
// show them; its other search hosts and the search sites we do not name
// keep their host (their channel is Organic Search all the same).
func TestSearchName(t *testing.T) {
	tests := []struct{ host, want string }{
		{"google.com", "google"}, {"google.com.au", "google"}, {"lens.google.com", "google"}, {"play.google.com", "google"},
		{"bing.com", "bing"}, {"cn.bing.com", "bing"},
		{"yahoo.com", "yahoo"}, {"espanol.search.yahoo.com", "yahoo"}, {"search.yahoo.co.jp", "yahoo"},
		{"m.search.naver.com", "naver"}, {"m.baidu.com", "baidu"}, {"yandex.com.tr", "yandex"}, {"zen.yandex.ru", "yandex"},
		{"duckduckgo.com", "duckduckgo"}, {"ecosia.org", "ecosia"}, {"lite.qwant.com", "qwant"}, {"wap.sogou.com", "sogou"},
		{"so.com", "360.cn"}, {"go.mail.ru", "mail.ru"}, {"email.seznam.cz", "seznam"}, {"search.aol.co.uk", "aol"},
		{"suche.aol.de", "aol"}, {"ask.com", "ask"}, {"dogpile.com", "dogpile"}, {"daum.net", "daum"}, {"onet.pl", "onet"},
		{"rambler.ru", "rambler"},
		{"mail.yandex.ru", ""}, {"ntp.msn.com", ""}, {"centrum.cz", ""}, {"360.cn", ""}, {"rakuten.co.jp", ""},
		{"kin.naver.com", ""}, {"mail.google.com", ""}, {"news.yahoo.com", ""}, {"google", ""}, {"localhost", ""},
	}
	for _, tt := range tests {
		got, ok := searchName(tt.host)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("searchName(%q) = %q, %v, want %q", tt.host, got, ok, tt.want)
		}
	}
}

// representativeSources are hosts and names with the category Google's
// list gives them (or none), a few of each kind of rule: names, domains
// and their subdomains, brands on country domains, portals' subdomains,
// engines' hosts, and what is close to a listed site but not it.
var representativeSources = `
search: google bing yahoo yandex baidu naver duckduckgo ask aol seznam qwant sogou daum onet rambler dogpile msn cnn
search: comcast lycos terra globo virgilio alice avg babylon conduit eniro incredimail kvasir najdi search-results
search: startsiden ukr auone biglobe rakuten google-play 360.cn so.com m.so.com
search: google.com www.google.de google.co.uk google.com.br google.co.jp lens.google.com news.google.com
search: search.google.com play.google.com bing.com www.bing.com cn.bing.com yahoo.com yahoo.co.jp
search: fr.search.yahoo.com malaysia.search.yahoo.com yandex.ru yandex.com.tr yandex.kz webmaster.yandex.ru
search: naver.com m.naver.com m.search.naver.com m.baidu.com ecosia.org qwant.com lite.qwant.com sogou.com
search: m.sogou.com seznam.cz email.seznam.cz firmy.cz centrum.cz go.mail.ru daum.net onet.pl rambler.ru
search: mail.rambler.ru dogpile.com msn.com ntp.msn.com excite.com exalead.com tut.by startsiden.no
search: biglobe.ne.jp biglobe.co.jp rakuten.co.jp websearch.rakuten.co.jp search.smt.docomo.ne.jp
search: sp-web.search.auone.jp search.ukr.net secureurl.ukr.net search.aol.com search.aol.co.uk suche.aol.de
social: facebook fb instagram ig twitter linkedin pinterest reddit tiktok snapchat tumblr quora whatsapp messenger
social: line wechat xing blogger blogspot wordpress flickr digg disqus tripadvisor trustpilot yelp social hatena
social: imageshack google+ googleplus skype zalo niconico feedspot gooblog livedoorblog newsshowcase shareit nexopia
social: facebook.com m.facebook.com l.facebook.com lm.facebook.com business.facebook.com fb.me instagram.com
social: l.instagram.com twitter.com t.co linkedin.com lnkd.in pinterest.com pinterest.de pinterest.co.uk
social: pinterest.com.mx za.pinterest.com reddit.com old.reddit.com amp.reddit.com t.me line.me vk.com away.vk.com
social: vkontakte.ru odnoklassniki.ru odnoklassniki.ua tiktok.com snapchat.com quora.com medium.com meetup.com
social: news.ycombinator.com stackoverflow.com askubuntu.com serverfault.com superuser.com bit.ly tinyurl.com
social: goo.gl is.gd blogspot.com draft.blogger.com wordpress.com wordpress.org tumblr.com weebly.com
social: typepad.com livejournal.com flickr.com photobucket.com digg.com disqus.com slideshare.net scribd.com
social: yelp.com yelp.co.uk m.yelp.com tripadvisor.com glassdoor.com goodreads.com deviantart.com fandom.com
social: buzzfeed.com flipboard.com getpocket.com pocket.co paper.li scoop.it researchgate.net academia.edu
social: sites.google.com groups.google.com googlegroups.com plus.google.com messages.google.com
social: answers.yahoo.com bookmarks.yahoo.co.jp chiebukuro.yahoo.co.jp blog.yahoo.co.jp messages.yahoo.co.jp
social: blog.naver.com m.blog.naver.com cafe.naver.com kin.naver.com lifestream.aol.com b.hatena.ne.jp
social: blog.goo.ne.jp oshiete.goo.ne.jp web.skype.com chat.zalo.me qzone.qq.com spaces.live.com my.opera.com
social: video.ibm.com wiki.answers.com forums.crackberry.com forums.nexopia.com copainsdavant.linternaute.com
social: blog.feedspot.com pro.homeadvisor.com yahoo-mbga.jp mbga.jp ushareit.com crunchyroll.com nicovideo.jp
social: kakao.com kakaocorp.com jappy.de hyves.nl imageshack.us 5ch.net mixi.jp pixiv.net gutefrage.net rtl.de
video: youtube vimeo twitch netflix hulu dailymotion wistia disneyplus iqiyi youku ted crackle veoh utreon
video: youtube.com m.youtube.com music.youtube.com vimeo.com player.vimeo.com twitch.tv m.twitch.tv
video: blog.twitch.tv netflix.com help.netflix.com hulu.com dailymotion.com wistia.com fast.wistia.net
video: iq.com iqiyi.com youku.com ted.com d.tube justin.tv viadeo.journaldunet.com curiositystream.com
shopping: amazon ebay etsy walmart shopify alibaba mercadolibre stripe shopzilla igshopping
shopping: amazon.com amazon.co.uk amazon.de amazon.co.jp ebay.com ebay.de ebay.co.uk ebay.com.au
shopping: mercadolibre.com mercadolibre.com.ar mercadolibre.com.mx etsy.com walmart.com one.walmart.com
shopping: shopify.com apps.shopify.com checkout.shopify.com shop.app alibaba.com m.alibaba.com
shopping: stripe.com checkout.stripe.com shopping.yahoo.com shopping.yahoo.co.jp order.shopping.yahoo.co.jp
shopping: shopping.naver.com m.shopping.naver.com msearch.shopping.naver.com uk.shopping.net nl.shopping.net
shopping: s3.amazonaws.com aax.amazon-adsystem.com simplycodes.com shopzilla.com
none: example.com news.example.org mail.google.com docs.google.com accounts.google.com translate.google.com
none: news.yahoo.com de.yahoo.com yahoo.de aol.com mail.aol.com news.naver.com baike.baidu.com yandex.net
none: ask.fm so.de e.mail.ru cnn.com lycos.com trustpilot.com skype.com zalo.me live.com opera.com
none: feedspot.com goo.ne.jp hatena.ne.jp androidcentral.com amazonaws.com bucket.s3.amazonaws.com
none: amazon-adsystem.com wistia.net rakuten.com startpage.com kagi.com search.brave.com mojeek.com
none: coccoc.com threads.net bsky.app discord.com mastodon.social slack.com aliexpress.com temu.com
none: target.com rumble.com bilibili.com github.com en.wikipedia.org facebook.com.evil.example
none: pinterest.net yandex.org ebay.org notfacebook.com localhost (direct) (not set) newsletter partner
none: brave kagi startpage vk telegram discord threads bsky x hacker
`

// TestRepresentativeSources runs the classifier over
// representativeSources.
func TestRepresentativeSources(t *testing.T) {
	cats := map[string]Category{"search": CategorySearch, "social": CategorySocial, "video": CategoryVideo, "shopping": CategoryShopping, "none": CategoryNone}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(representativeSources), "\n") {
		label, list, _ := strings.Cut(line, ":")
		want, ok := cats[label]
		if !ok {
			t.Fatalf("unknown category in %q", line)
		}
		for _, s := range strings.Fields(list) {
			n++
			if got := SourceCategory(s); got != want {
				t.Errorf("SourceCategory(%q) = %v, want %s", s, got, label)
			}
		}
	}
	if n < 400 {
		t.Errorf("only %d sources", n)
	}
}

// Our exceptions to Google's list: each is an alias of a site it lists,
// and names our attribution gives search engines.
func TestSourceCategoryExceptions(t *testing.T) {
	for s, want := range map[string]Category{
		"x.com": CategorySocial, "fb.com": CategorySocial, "pin.it": CategorySocial, "redd.it": CategorySocial,
		"wa.me": CategorySocial, "ok.ru": CategorySocial, "web.telegram.org": CategorySocial, "youtu.be": CategoryVideo,
		"shopping.google.com": CategoryShopping, "ecosia": CategorySearch, "mail.ru": CategorySearch,
	} {
		if got := SourceCategory(s); got != want {
			t.Errorf("SourceCategory(%q) = %v, want %v", s, got, want)
		}
	}
}

// Classifying runs at each session's start: it must not allocate.
func TestSourceCategoryAllocs(t *testing.T) {
	for _, s := range benchSources {
		if n := testing.AllocsPerRun(100, func() { SourceCategory(s); searchName(s) }); n != 0 {
			t.Errorf("%q: %v allocations", s, n)
		}
	}
}

var benchSources = []string{"google.com", "www.google.co.uk", "m.facebook.com", "news.example.org", "t.co",
	"m.search.naver.com", "pinterest.com.au", "google", "newsletter", "ntp.msn.com", "a.b.c.example.co.uk"}

func BenchmarkSourceCategory(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		SourceCategory(benchSources[i%len(benchSources)])
	}
}

func BenchmarkSearchName(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		searchName(benchSources[i%len(benchSources)])
	}
}
