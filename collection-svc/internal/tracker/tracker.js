/*! Acme Analytics tracker v1 | docs/collection.md */
(function (w, d, n, loc) {
  var s = d.currentScript;
  if (!s || w.__at) return;
  w.__at = 1;
  var tid = s.dataset.tid,
    url = new URL(s.src).origin + '/collect?tid=' + encodeURIComponent(tid),
    cookieless = 'cookieless' in s.dataset,
    now = Date.now,
    ls, optout, id, dom, pend, tm, title, since, visible, shown, last, page,
    // ref is the referrer of the page shown: the document's, after a
    // single-page-app navigation the previous URL. Hits within a minute of
    // the page's pageview carry it, so that a session whose first hit is an
    // event queued with the pageview keeps its source; later ones do not,
    // so that a click after half an hour idle starts a Direct session.
    ref = d.referrer,
    // Each field's limit in UTF-8 bytes: collection's where it has one
    // (ec, ea, el), and for the page's fields less than its 4096 (dl, dr)
    // and 1500 (dt), so that a whole hit, its names and values, stays
    // within collection's 8 KiB (TestLimitsKeepAHitWhole).
    lim = { dl: 3500, dr: 2000, dt: 1000, ec: 150, ea: 500, el: 500 };
  try { ls = w.localStorage; } catch (e) {}

  // The merchant's opt-out (window['at-disable-<tid>'] or at('optout')),
  // Do-Not-Track and Global Privacy Control stop every hit.
  function off() {
    try {
      return optout || w['at-disable-' + tid] || ls && ls.getItem('at_optout') == 1 ||
        (n.doNotTrack || w.doNotTrack) == 1 || n.globalPrivacyControl;
    } catch (e) { return 1; }
  }
  function rnd(k) {
    var h = '';
    crypto.getRandomValues(new Uint8Array(k)).forEach(function (b) { h += (b | 256).toString(16).slice(1); });
    return h;
  }
  // A first-party cookie keeps the client ID for two years, on the highest
  // domain that takes it (www.shop.com and shop.com are one visitor); the ID
  // is kept in memory too, so that blocked cookies make one visitor per
  // page, not per hit. In cookieless mode there is none and collection
  // derives a daily visitor ID.
  function cid() {
    if (cookieless) return;
    try {
      var m = d.cookie.match(/(?:^|; )_at_cid=([^;]+)/), p = loc.hostname.split('.'), i, c;
      id = id || (m ? m[1] : rnd(16));
      // The highest domain that takes a cookie (not a public suffix):
      // found once with a probe cookie, else the host alone. dom is the
      // cookie's Path and Domain then.
      if (dom == null) for (dom = '', i = p.length - 2; i >= 0 && !dom; i--) {
        c = '; Path=/; Domain=' + p.slice(i).join('.');
        d.cookie = '_at_p=1' + c;
        if (/_at_p=1/.test(d.cookie)) { dom = c; d.cookie = '_at_p=1; Max-Age=0' + c; }
      }
      d.cookie = '_at_cid=' + id + '; Max-Age=63072000; SameSite=Lax' + (dom || '; Path=/') + (loc.protocol == 'https:' ? '; Secure' : '');
    } catch (e) {}
    return id = id || rnd(16);
  }
  // post keeps the hit's hid on its retries, so a re-sent hit counts once.
  // A fetch sees the answer (collection's carry Access-Control-Allow-Origin,
  // and a text/plain body needs no preflight): a 5xx or a network failure
  // is retried after 1, 2 and 4 s. A beacon's answer is never seen.
  function post(h, t0, tries) {
    var b = JSON.stringify({ hits: [h] });
    if (!tries && n.sendBeacon && n.sendBeacon(url, b)) return;
    fetch(url, { method: 'POST', body: b, keepalive: 1 }).then(function (r) {
      if (r.status > 499) throw 0;
    }).catch(function () {
      if (tries < 3) setTimeout(function () { h.qt = now() - t0; post(h, t0, tries + 1); }, 1000 << tries);
    });
  }
  // A single-page app's pageview waits for its title (view): pend sends
  // it, and any hit sent before (an event, the ping when the page is
  // hidden or left) sends it first.
  function flush() {
    var p = pend;
    pend = 0;
    p && p();
  }
  function hit(t, o) {
    flush();
    if (off()) return;
    // cid is undefined in cookieless mode: JSON leaves it out.
    var h = { v: 1, t: t, hid: rnd(8), dl: page, dt: d.title, sr: screen.width + 'x' + screen.height, ul: n.language, cid: cid() }, k;
    if (ref && (t == 'pageview' || now() - shown < 6e4)) h.dr = ref;
    for (k in o) if (o[k] != null) h[k] = o[k];
    // Collection's limits are UTF-8 bytes: a field is cut to them at a
    // character's end (a streaming decoder keeps a cut character's bytes
    // back), and a lone surrogate becomes U+FFFD.
    for (k in lim) if (h[k] != null) h[k] = new TextDecoder().decode(new TextEncoder().encode(h[k]).slice(0, lim[k]), { stream: 1 });
    post(h, now(), 0);
  }

  // Engagement: visible time on the page shown (page), sent when it is
  // hidden or left, and before the next pageview of a single-page app.
  function ping() {
    var t = now(), e = t - since;
    flush();
    since = t;
    if (visible && e > 0) hit('engagement', { et: Math.min(e, 864e5), dl: page });
  }
  // The page becomes visible (v) or hidden, which sends the ping.
  // (document.hidden is visibilityState == 'hidden', by the standard.)
  function vis(v) {
    v || ping();
    visible = v;
    since = now();
  }
  d.addEventListener('visibilitychange', function () { vis(!d.hidden); });
  // Leaving in the same tab: pagehide comes before visibilitychange, which
  // then has nothing more to send.
  w.addEventListener('pagehide', function () { vis(0); });
  // Back to a page kept in the back/forward cache: it is shown again, as a
  // pageview, though the script does not run again; from the site itself,
  // not from the page's first referrer (which would start a session of its
  // source again after half an hour).
  w.addEventListener('pageshow', function (e) {
    if (e.persisted) { vis(1); shown = since; ref = 0; hit('pageview'); }
  });

  // view shows page u (a URL without fragment): the ping of the page shown
  // until now, which becomes the referrer, then the pageview, titled t or
  // else by the document 300 ms later (as Umami waits): routers set the
  // title after pushState, React's after rendering and painting. The page
  // shown already is no new pageview, whether the router's
  // at('pageview', path) or its pushState comes first: t, if any, titles
  // its pageview if still waiting. A navigation's wait ends the previous
  // one's, which would send this pageview early with the old title.
  function view(u, t) {
    if (u == page) return t && (title = t);
    ping();
    ref = page;
    page = u;
    shown = now();
    title = t;
    pend = function () { hit('pageview', { dl: u, dt: title || d.title }); };
    clearTimeout(tm);
    tm = setTimeout(flush, 300);
  }
  // Single-page apps: a new pageview whenever the history API changes the
  // URL (the fragment aside), once the load's pageview is sent (q is 0).
  // last is the URL of the last history change, kept apart from page: a
  // virtual page shown at the same URL is not left by a replaceState that
  // keeps the URL.
  function here() { return loc.href.split('#')[0]; }
  function nav() {
    if (!q && here() != last) view(last = here());
  }
  ['pushState', 'replaceState'].forEach(function (m) {
    var f = history[m];
    history[m] = function () { var r = f.apply(this, arguments); nav(); return r; };
  });
  w.addEventListener('popstate', nav);

  // Outbound links: to another site, not to the site's own subdomains or
  // its name with or without www.; clicked or middle-clicked (button 1: a
  // right click is no visit). A link in SVG has no protocol (undefined
  // fails the test): not counted. An http(s) URL always has a hostname.
  function site(h) { return h.replace(/^www\./, ''); }
  function out(e) {
    var a = e.target.closest && e.target.closest('a[href]'), h, o = site(loc.hostname);
    if (a && e.button < 2 && /^https?:$/.test(a.protocol) && (h = site(a.hostname)) != o && !h.endsWith('.' + o) && !o.endsWith('.' + h)) hit('event', { ec: 'outbound', ea: 'click', el: a.href });
  }
  d.addEventListener('click', out, 1);
  d.addEventListener('auxclick', out, 1);

  // at('event', category, action, label, value), at('event', {category,
  // action, label, value, nonInteraction}) or GA4's at('event', name,
  // {event_category, event_label, value, non_interaction}): one of category
  // and action alone (at('event', 'sign_up')) is both, and a name's
  // category is its event_category else the name, as the Measurement API
  // makes them.
  // at('pageview', path, title): a virtual pageview (path a string, its
  // fragment dropped as collection drops it); at('pageview'), or with
  // another path (GA's object form), only when the URL has none yet (load
  // and history are counted already). A path without a query is the page
  // shown if that is it with a query: at('pageview', location.pathname),
  // ported from GA, on a landing page with utm tags is no second pageview.
  // at('optout'); at('optin'): without localStorage (ls) the choice holds
  // for the page only (the throw is caught by run).
  function cmd(c, a, b, l, v) {
    if (c == 'event') {
      var ni, p = b;
      if (p && typeof p == 'object') { b = a; l = p.event_label; v = p.value; ni = p.non_interaction; a = p.event_category; }
      else if (a && typeof a == 'object') { b = a.action; l = a.label; v = a.value; ni = a.nonInteraction; a = a.category; }
      // A value collection would refuse (no number, as '12,50', or past
      // 10^15) is left out: the event counts without it, as in GA4.
      hit('event', { ec: a || b, ea: b || a, el: l, ev: v != null && Math.abs(v) <= 1e15 ? +v : null, ni: ni && 1 });
    } else if (c == 'pageview') {
      a = typeof a == 'string' ? new URL(a, loc).href.split('#')[0] : here();
      view(a == page.split('?')[0] ? page : a, b);
    }
    else if (c == 'optout') { optout = 1; ls.setItem('at_optout', 1); }
    else if (c == 'optin') { optout = 0; ls.removeItem('at_optout'); }
  }
  // A command that throws (a path that is no URL) stops neither the
  // merchant's code nor the commands after it.
  function run(a) {
    try { cmd.apply(0, a); } catch (e) {}
  }
  // Commands wait in q until the load's pageview is sent. start releases
  // q before running them, so that later calls run at once, whatever the
  // queued ones do.
  var q = w.at && w.at.q || [];
  w.at = function () { q ? q.push(arguments) : run(arguments); };
  function start() {
    var p = q;
    q = 0;
    vis(!d.hidden);
    shown = since;
    last = page = here();
    // An opt-out queued before load holds for the load's pageview too.
    p.forEach(function (a) { /^opt/.test(a[0]) && run(a); });
    hit('pageview');
    p.forEach(function (a) { /^opt/.test(a[0]) || run(a); });
  }
  // A page prerendered (Speculation Rules) is counted when it is shown, if
  // ever.
  d.prerendering ? d.addEventListener('prerenderingchange', start) : start();
})(window, document, navigator, location);
