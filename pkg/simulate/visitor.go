package simulate

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// planned is a hit as the oracle sees it.
type planned struct {
	t        time.Time
	typ      string // pageview, event, engagement
	path     string // a pageview's page; an event's before the first pageview (one queued on the landing page)
	campaign string // a new campaign starts on this hit ("" for none)
	cat, act string
	label    string
	value    float64
	// nonInteraction is an event sent with ni=1: it does not keep its
	// session from being a bounce.
	nonInteraction bool
	// sendAfter is how long after its time the hit is sent (besides the
	// plan's random late sends): an event queued on a page goes right
	// after the page's pageview, which is dated later.
	sendAfter time.Duration
	// withNext: sent in one request with the next hit (Hit.WithNext).
	withNext bool
}

// browser is who a visitor is: the client ID its tracker keeps, its
// browser and device, and the address its requests come from.
type browser struct {
	cid, ua, screen, ip string
	device, name        string // the device category and browser reports show
	// bot is a crawler's user agent; internal an address inside the
	// property's excluded range.
	bot, internal bool
}

// browser draws visitor v's browser: most are people, one in 25 a bot and
// 3 in 100 the merchant's own staff (inside ExcludedCIDR).
func (p *planner) browser(v int) browser {
	b := browser{cid: fmt.Sprintf("%d.%d", 1_000_000_000+p.rng.IntN(1_000_000_000), v)}
	ua := userAgents[p.rng.IntN(len(userAgents))]
	b.ua, b.screen, b.device, b.name = ua.ua, ua.screen, ua.device, ua.browser
	b.ip = fmt.Sprintf("198.51.100.%d", 1+p.rng.IntN(250))
	traffic := p.rng.IntN(100)
	b.bot, b.internal = traffic < 4, traffic >= 4 && traffic < 7
	if b.bot {
		b.ua = botUA
	}
	if b.internal {
		b.ip = "203.0.113." + strconv.Itoa(1+p.rng.IntN(250))
	}
	return b
}

// source draws where a visit comes from, by the sources' weights.
func (p *planner) source() source {
	return sources[p.pick(func(i int) int { return sources[i].weight }, len(sources))]
}

// visitor plans one visitor's hits and records its sessions' expectations.
func (p *planner) visitor(v int) {
	b := p.browser(v)
	sessions := 1
	if r := p.rng.IntN(100); r >= 60 {
		sessions = 2
		if r >= 90 {
			sessions = 3
		}
	}
	start := p.cfg.End.Add(-p.cfg.Window).Add(time.Duration(p.rng.Int64N(int64(p.cfg.Window / 2))))
	if p.rng.IntN(10) == 0 && p.cfg.MidnightBefore < p.cfg.Window {
		// Straddle the property's local midnight.
		start = p.cfg.End.Add(-p.cfg.MidnightBefore - time.Duration(2+p.rng.IntN(10))*time.Minute)
	}
	kind := p.firstVisit(v) // later visits are ordinary
	if m := p.cfg.MidnightBefore; (kind == pauseOfTimeout || kind == pauseOverTimeout) && m < p.cfg.Window && m >= 90*time.Minute {
		// Just after the property's midnight, so that the pause is not also
		// a change of date, which would end the session whatever its length.
		start = p.cfg.End.Add(-m + time.Duration(1+p.rng.IntN(20))*time.Minute)
	}
	at := start
	firstOfVisitor := true
	for s := 0; s < sessions && at.Before(p.cfg.End); s++ {
		src := p.source()
		hits := p.session(src, at, kind)
		kind = ordinary
		var kept []planned
		for _, h := range hits {
			if !h.t.After(p.cfg.End) {
				kept = append(kept, h)
			}
		}
		if len(kept) == 0 {
			break
		}
		p.emit(b, src, kept)
		switch {
		case b.bot:
			p.expect.filtered(kept, "bot")
		case b.internal:
			p.expect.filtered(kept, "ip")
		default:
			firstOfVisitor = p.expect.sessions(b.cid, b.device, b.name, src, kept, firstOfVisitor)
		}
		// The next visit comes after more than the session timeout.
		at = kept[len(kept)-1].t.Add(SessionTimeout + time.Duration(1+p.rng.IntN(60))*time.Minute + time.Duration(p.rng.IntN(60))*time.Second)
	}
}

// special is a visit planned to exercise a definition that is easy to get
// wrong (docs/processing.md, "Sessions").
type special int

const (
	ordinary               special = iota
	eventFirst                     // the first hit is an event dated just before the landing pageview
	nonInteractionOnly             // one page and only non-interaction events
	nonInteractionAndClick         // one page, non-interaction events and a click
	pauseOfTimeout                 // a pause of exactly the session timeout before a later page
	pauseOverTimeout               // a pause of a second more
)

// specialEvery: one visitor in specialEvery has each special visit, as its
// first, so that every plan of a few dozen visitors has them all.
const specialEvery = 20

// firstVisit returns what the first visit of visitor v is planned to
// exercise, if anything; the plan's seed decides which visitors have which.
func (p *planner) firstVisit(v int) special {
	if s := special((v + p.rotation) % specialEvery); s <= pauseOverTimeout {
		return s
	}
	return ordinary
}

// session plans one visit's hits from src starting at start.
func (p *planner) session(src source, start time.Time, kind special) []planned {
	var out []planned
	t := start
	n := 1 + p.rng.IntN(6)
	path := pages[p.rng.IntN(len(pages))]
	campaignChange := src.name == "email" && n >= 3 && p.rng.IntN(4) == 0
	reader := kind == nonInteractionOnly || kind == nonInteractionAndClick
	var pause time.Duration // before one of the later pages
	switch kind {
	case pauseOfTimeout:
		pause = SessionTimeout
	case pauseOverTimeout:
		pause = SessionTimeout + time.Second
	}
	pauseBefore := -1
	switch {
	case reader:
		n = 1
	case pause > 0:
		n = max(n, 2)
		pauseBefore = 1 + p.rng.IntN(n-1)
	}
	if kind == eventFirst {
		out = append(out, p.queuedEvent(start, path))
	}
	for i := 0; i < n; i++ {
		if i == pauseBefore {
			// The visitor comes back to the tab after the pause, and the
			// tracker sends the hit before the pause with the one after
			// (its queue flushed on resume), so that the gap reaches
			// processing exactly as planned: sent apart, each hit's time
			// would be off by its request's latency.
			last := latest(out)
			out[last].withNext = true
			t = out[last].t.Add(pause)
		}
		pv := planned{t: t, typ: "pageview", path: path}
		if campaignChange && i == 2 {
			pv.campaign = "gclid" // clicked an ad mid-visit: a new session
		}
		out = append(out, pv)
		switch {
		case reader:
			out = append(out, p.reading(t, kind == nonInteractionAndClick)...)
		case p.rng.IntN(5) == 0:
			out = append(out, p.event(t.Add(time.Duration(3+p.rng.IntN(25))*time.Second+halfSecond)))
		}
		t = t.Add(time.Duration(20+p.rng.IntN(280)) * time.Second)
		path = pages[p.rng.IntN(len(pages))]
	}
	if !reader && p.rng.IntN(7) == 0 {
		for _, pth := range []string{"/cart", "/checkout", GoalPurchasePath} {
			out = append(out, planned{t: t, typ: "pageview", path: pth})
			t = t.Add(time.Duration(15+p.rng.IntN(60)) * time.Second)
		}
	}
	if p.rng.IntN(10) < 6 {
		last := out[latest(out)].t
		// A quarter second: after an event's half second, the session's
		// duration still falls between whole seconds.
		out = append(out, planned{t: last.Add(time.Duration(5+p.rng.IntN(45))*time.Second + quarterSecond), typ: "engagement"})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].t.Before(out[j].t) })
	return out
}

// latest returns the index of the latest of hits.
func latest(hits []planned) int {
	k := 0
	for i, h := range hits {
		if h.t.After(hits[k].t) {
			k = i
		}
	}
	return k
}

// queuedEvent plans an event that the landing page (path, shown at
// start) queued before the tracker loaded. The tracker sends it right
// after the pageview, in a request of its own, and the collection
// instance that takes it runs a few milliseconds behind the one that took
// the pageview: it is dated before the pageview and becomes the session's
// first hit. It carries the page's location and referrer, as every hit of
// the page does, so the session's source is the same either way. (A hit
// played here is dated by its receive time minus its queue time, off by
// its request's latency, a millisecond or two on loopback: from 5 ms on,
// the order planned is the order processing sees.)
func (p *planner) queuedEvent(start time.Time, path string) planned {
	skew := time.Duration(5+p.rng.IntN(46)) * time.Millisecond
	ev := p.event(start.Add(-skew))
	ev.path = path
	ev.sendAfter = skew + time.Millisecond
	return ev
}

// reading plans the events of a visitor reading the page shown at t to
// the end: scroll-depth events, sent as non-interaction so that reading
// one page is still a bounce, and a click after if click.
func (p *planner) reading(t time.Time, click bool) []planned {
	scroll := func(after time.Duration, depth string) planned {
		return planned{t: t.Add(after + halfSecond), typ: "event", cat: "scroll", act: "depth", label: depth, nonInteraction: true}
	}
	out := []planned{scroll(time.Duration(8+p.rng.IntN(20))*time.Second, "50%")}
	if p.rng.IntN(2) == 0 {
		out = append(out, scroll(time.Duration(30+p.rng.IntN(60))*time.Second, "90%"))
	}
	if click {
		out = append(out, p.event(t.Add(time.Duration(95+p.rng.IntN(60))*time.Second+halfSecond)))
	}
	return out
}

// Offsets that keep a session's duration off whole seconds (events at a
// half, engagement pings at a quarter past), so that no session lasts
// within a request's latency of the 10-second engagement threshold.
const (
	halfSecond    = 500 * time.Millisecond
	quarterSecond = 250 * time.Millisecond
)

func (p *planner) event(t time.Time) planned {
	switch p.rng.IntN(3) {
	case 0:
		// A label holding " / ", the separator of the stored event rows'
		// parts (rollup.JoinDimension), which must not split it.
		return planned{t: t, typ: "event", cat: "video", act: "play", label: "intro / 30s", value: float64(p.rng.IntN(5))}
	case 1:
		return planned{t: t, typ: "event", cat: "cta", act: "click", label: "hero"}
	default:
		return planned{t: t, typ: "event", cat: GoalSignupCat, act: GoalSignupAction, label: "footer"}
	}
}

// emit turns planned hits into requests, with some sent late and some
// sent twice.
func (p *planner) emit(b browser, src source, hits []planned) {
	base := "https://" + p.cfg.Host
	// The landing URL's tags or click ID: the same on every hit that
	// carries them, so that they are one campaign.
	landing := ""
	if src.url != "" {
		landing = "?" + expandClickID(src.url, p.seq+1)
	}
	first := len(p.hits)
	prev := "" // the page shown: the last pageview's
	for i, h := range hits {
		q := url.Values{}
		q.Set("v", "1")
		q.Set("cid", b.cid)
		q.Set("t", h.typ)
		q.Set("hid", p.hid())
		if b.screen != "" {
			q.Set("sr", b.screen)
		}
		page, loc, ref := prev, base+prev, base+prev // an event or a ping is on the page shown
		switch {
		case prev == "":
			// The landing page's pageview, or an event queued on it that
			// was dated first: both carry the source's tags and referrer.
			page, loc, ref = h.path, base+h.path+landing, src.referrer
		case h.typ == "pageview":
			page, loc, ref = h.path, base+h.path, base+prev
			if h.campaign == "gclid" {
				loc += "?gclid=mid" + strconv.Itoa(p.seq)
			}
		}
		q.Set("dl", loc)
		q.Set("dt", "Title of "+page)
		if ref != "" {
			q.Set("dr", ref)
		}
		switch h.typ {
		case "event":
			q.Set("ec", h.cat)
			q.Set("ea", h.act)
			q.Set("el", h.label)
			if h.value != 0 {
				q.Set("ev", strconv.FormatFloat(h.value, 'f', -1, 64))
			}
			if h.nonInteraction {
				q.Set("ni", "1")
			}
		case "engagement":
			q.Set("et", strconv.FormatInt(h.t.Sub(hits[max(0, i-1)].t).Milliseconds(), 10))
		}
		if h.typ == "pageview" {
			prev = h.path
		}
		hit := Hit{At: h.t, Send: h.t.Add(h.sendAfter), Params: q, UA: b.ua, IP: b.ip, Copies: 1}
		if p.rng.IntN(30) == 0 {
			hit.Send = hit.Send.Add(time.Duration(10+p.rng.IntN(50)) * time.Minute) // late
		}
		if p.rng.IntN(20) == 0 {
			hit.Copies = 2 // re-sent
		}
		p.hits = append(p.hits, hit)
	}
	// A hit sent with the next waits for it: one request, sent (and
	// re-sent) as the later of the two would be.
	sent := p.hits[first:]
	for i := len(hits) - 2; i >= 0; i-- {
		if hits[i].withNext {
			a, b := &sent[i], &sent[i+1]
			a.WithNext = true
			if a.Send.After(b.Send) {
				b.Send = a.Send
			}
			a.Send = b.Send
			a.Copies = max(a.Copies, b.Copies)
			b.Copies = a.Copies
		}
	}
}

func expandClickID(q string, n int) string { return strings.ReplaceAll(q, "{n}", strconv.Itoa(n)) }

// malformed plans n hits that collection must reject, each with the
// class of its dead-letter reason.
func (p *planner) malformed(n int) {
	for i := 0; i < n; i++ {
		at := p.cfg.End.Add(-time.Duration(p.rng.IntN(60)) * time.Minute)
		q := url.Values{"v": {"1"}, "t": {"pageview"}, "hid": {p.hid()}, "dl": {"https://" + p.cfg.Host + "/"}}
		h := Hit{At: at, Send: at, Params: q, UA: userAgents[0].ua, IP: "198.51.100.7", Copies: 1, Malformed: "malformed"}
		switch i % 3 {
		case 0: // no client ID
		case 1:
			q.Set("cid", "1.2")
			q.Set("t", "bogus")
		case 2:
			q.Set("cid", "1.3")
			h.Malformed = "unknown_tracking_id"
		}
		p.hits = append(p.hits, h)
		p.expect.DeadLetters[h.Malformed]++
	}
}

func sortHits(h []Hit) {
	sort.SliceStable(h, func(i, j int) bool { return h[i].Send.Before(h[j].Send) })
}
