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
	path     string
	campaign string // a new campaign starts on this hit ("" for none)
	cat, act string
	label    string
	value    float64
}

// visitor plans one visitor's hits and records its sessions' expectations.
func (p *planner) visitor(v int) {
	cid := fmt.Sprintf("%d.%d", 1_000_000_000+p.rng.IntN(1_000_000_000), v)
	ua := userAgents[p.rng.IntN(len(userAgents))]
	ip := fmt.Sprintf("198.51.100.%d", 1+p.rng.IntN(250))
	kind := p.rng.IntN(100)
	bot, internal := kind < 4, kind >= 4 && kind < 7
	if bot {
		ua.ua = botUA
	}
	if internal {
		ip = "203.0.113." + strconv.Itoa(1+p.rng.IntN(250))
	}
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
	at := start
	firstOfVisitor := true
	for s := 0; s < sessions && at.Before(p.cfg.End); s++ {
		src := sources[p.pick(func(i int) int { return sources[i].weight }, len(sources))]
		hits := p.session(src, at)
		var kept []planned
		for _, h := range hits {
			if !h.t.After(p.cfg.End) {
				kept = append(kept, h)
			}
		}
		if len(kept) == 0 {
			break
		}
		p.emit(cid, ua.ua, ip, src, kept)
		switch {
		case bot:
			p.expect.filtered(kept, "bot")
		case internal:
			p.expect.filtered(kept, "ip")
		default:
			firstOfVisitor = p.expect.sessions(cid, ua.device, ua.browser, src, kept, firstOfVisitor)
		}
		// The next visit comes after more than the session timeout.
		at = kept[len(kept)-1].t.Add(time.Duration(31+p.rng.IntN(60))*time.Minute + time.Duration(p.rng.IntN(60))*time.Second)
	}
}

// session plans one visit's hits from src starting at start.
func (p *planner) session(src source, start time.Time) []planned {
	var out []planned
	t := start
	n := 1 + p.rng.IntN(6)
	path := pages[p.rng.IntN(len(pages))]
	campaignChange := src.name == "email" && n >= 3 && p.rng.IntN(4) == 0
	for i := 0; i < n; i++ {
		pv := planned{t: t, typ: "pageview", path: path}
		if campaignChange && i == 2 {
			pv.campaign = "gclid" // clicked an ad mid-visit: a new session
		}
		out = append(out, pv)
		if p.rng.IntN(5) == 0 {
			// Half-second offsets keep a session's duration off whole
			// seconds, so no session lasts within a request's latency of
			// the 10-second engagement threshold.
			out = append(out, p.event(t.Add(time.Duration(3+p.rng.IntN(25))*time.Second+halfSecond)))
		}
		t = t.Add(time.Duration(20+p.rng.IntN(280)) * time.Second)
		path = pages[p.rng.IntN(len(pages))]
	}
	if p.rng.IntN(7) == 0 {
		for _, pth := range []string{"/cart", "/checkout", GoalPurchasePath} {
			out = append(out, planned{t: t, typ: "pageview", path: pth})
			t = t.Add(time.Duration(15+p.rng.IntN(60)) * time.Second)
		}
	}
	if p.rng.IntN(10) < 6 {
		last := out[len(out)-1].t
		out = append(out, planned{t: last.Add(time.Duration(5+p.rng.IntN(45))*time.Second + halfSecond), typ: "engagement"})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].t.Before(out[j].t) })
	return out
}

const halfSecond = 500 * time.Millisecond

func (p *planner) event(t time.Time) planned {
	switch p.rng.IntN(3) {
	case 0:
		return planned{t: t, typ: "event", cat: "video", act: "play", label: "intro", value: float64(p.rng.IntN(5))}
	case 1:
		return planned{t: t, typ: "event", cat: "cta", act: "click", label: "hero"}
	default:
		return planned{t: t, typ: "event", cat: GoalSignupCat, act: GoalSignupAction, label: "footer"}
	}
}

// emit turns planned hits into requests, with some sent late and some
// sent twice.
func (p *planner) emit(cid, ua, ip string, src source, hits []planned) {
	base := "https://" + p.cfg.Host
	prev := ""
	for i, h := range hits {
		q := url.Values{}
		q.Set("v", "1")
		q.Set("cid", cid)
		q.Set("t", h.typ)
		q.Set("hid", p.hid())
		page := h.path
		if h.typ != "pageview" {
			page = prev
		}
		loc := base + page
		switch {
		case i == 0 && src.url != "":
			loc += "?" + expandClickID(src.url, p.seq)
		case h.campaign == "gclid":
			loc += "?gclid=mid" + strconv.Itoa(p.seq)
		}
		q.Set("dl", loc)
		q.Set("dt", "Title of "+page)
		switch {
		case i == 0 && src.referrer != "":
			q.Set("dr", src.referrer)
		case i > 0:
			q.Set("dr", base+prev)
		}
		switch h.typ {
		case "event":
			q.Set("ec", h.cat)
			q.Set("ea", h.act)
			q.Set("el", h.label)
			if h.value != 0 {
				q.Set("ev", strconv.FormatFloat(h.value, 'f', -1, 64))
			}
		case "engagement":
			q.Set("et", strconv.FormatInt(h.t.Sub(hits[max(0, i-1)].t).Milliseconds(), 10))
		}
		if h.typ == "pageview" {
			prev = h.path
		}
		hit := Hit{At: h.t, Send: h.t, Params: q, UA: ua, IP: ip, Copies: 1}
		if p.rng.IntN(30) == 0 {
			hit.Send = h.t.Add(time.Duration(10+p.rng.IntN(50)) * time.Minute) // late
		}
		if p.rng.IntN(20) == 0 {
			hit.Copies = 2 // re-sent
		}
		p.hits = append(p.hits, hit)
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
