/*! Acme Analytics tracker v1 | docs/collection.md */
(function (w, d, n, loc) {
  var s = d.currentScript;
  if (!s || w.__at) return;
  w.__at = 1;
  var tid = s.getAttribute('data-tid'),
    url = new URL(s.src).origin + '/collect?tid=' + encodeURIComponent(tid),
    cookieless = s.hasAttribute('data-cookieless'),
    ls,
    // ref is the referrer of the page shown: the document's, after a
    // single-page-app navigation the previous URL. Every hit carries it, so
    // that a session whose first hit is an event keeps its source.
    ref = d.referrer;
  try { ls = w.localStorage; } catch (e) {}

  // The merchant's opt-out (window['at-disable-<tid>'] or at('optout')),
  // Do-Not-Track and Global Privacy Control stop every hit.
  function off() {
    try {
      return w['at-disable-' + tid] || (ls && ls.getItem('at_optout') == '1') ||
        n.doNotTrack == '1' || w.doNotTrack == '1' || n.globalPrivacyControl;
    } catch (e) { return 1; }
  }
  function rnd(k) {
    var a = new Uint8Array(k), h = '', i;
    crypto.getRandomValues(a);
    for (i = 0; i < k; i++) h += (a[i] | 256).toString(16).slice(1);
    return h;
  }
  // A first-party cookie keeps the client ID for two years; in cookieless
  // mode there is none and collection derives a daily visitor ID.
  function cid() {
    if (cookieless) return;
    var m = d.cookie.match(/(?:^|; )_at_cid=([^;]+)/), v = m ? m[1] : rnd(16);
    d.cookie = '_at_cid=' + v + '; Max-Age=63072000; Path=/; SameSite=Lax' + (loc.protocol == 'https:' ? '; Secure' : '');
    return v;
  }
  // post keeps the hit's hid on its retries, so a re-sent hit counts once.
  function post(h, t0, tries) {
    if (tries) h.qt = Date.now() - t0;
    var b = JSON.stringify({ hits: [h] });
    if (!tries && n.sendBeacon && n.sendBeacon(url, b)) return;
    fetch(url, { method: 'POST', body: b, keepalive: true, mode: 'no-cors' })['catch'](function () {
      if (tries < 3) setTimeout(function () { post(h, t0, tries + 1); }, 1000 << tries);
    });
  }
  function hit(t, o) {
    if (off()) return;
    var h = { v: 1, t: t, hid: rnd(8), dl: loc.href, dt: d.title, sr: screen.width + 'x' + screen.height, ul: n.language },
      c = cid(), k;
    if (c) h.cid = c;
    if (ref) h.dr = ref;
    for (k in o) if (o[k] != null) h[k] = o[k];
    post(h, Date.now(), 0);
  }

  // Engagement: visible time on the page, sent when the page is hidden or
  // left, and before a single-page-app navigation.
  var since = Date.now(), acc = 0, visible = d.visibilityState != 'hidden';
  function ping(dl) {
    var now = Date.now();
    if (visible) acc += now - since;
    since = now;
    if (acc > 0) hit('engagement', { et: acc, dl: dl });
    acc = 0;
  }
  d.addEventListener('visibilitychange', function () {
    if (d.visibilityState == 'hidden') { ping(); visible = 0; }
    else { visible = 1; since = Date.now(); }
  });
  w.addEventListener('pagehide', function () { ping(); });

  // Single-page apps: a new pageview whenever the history API changes the
  // URL (the fragment aside).
  function here() { return loc.href.split('#')[0]; }
  var last = here();
  function nav() {
    if (here() == last) return;
    ping(last);
    ref = last;
    hit('pageview');
    last = here();
  }
  ['pushState', 'replaceState'].forEach(function (m) {
    var f = history[m];
    history[m] = function () { var r = f.apply(this, arguments); nav(); return r; };
  });
  w.addEventListener('popstate', nav);

  // Outbound links.
  d.addEventListener('click', function (e) {
    var a = e.target.closest && e.target.closest('a[href]');
    if (a && /^https?:$/.test(a.protocol) && a.host != loc.host) hit('event', { ec: 'outbound', ea: 'click', el: a.href });
  }, true);

  // at('event', category, action, label, value) or at('event', {category,
  // action, label, value, nonInteraction}); at('pageview'); at('optout');
  // at('optin').
  function cmd(c, a, b, l, v) {
    if (c == 'event') {
      var ni;
      if (a && typeof a == 'object') { b = a.action; l = a.label; v = a.value; ni = a.nonInteraction; a = a.category; }
      hit('event', { ec: a, ea: b, el: l, ev: v, ni: ni ? 1 : null });
    } else if (c == 'pageview') hit('pageview');
    else if (ls && c == 'optout') ls.setItem('at_optout', '1');
    else if (ls && c == 'optin') ls.removeItem('at_optout');
  }
  var q = (w.at && w.at.q) || [];
  w.at = function () { cmd.apply(0, arguments); };
  hit('pageview');
  for (var i = 0; i < q.length; i++) cmd.apply(0, q[i]);
})(window, document, navigator, location);
