// Package simulate plays realistic traffic through the product and knows,
// by construction, what every report must say.
//
// A Plan is a deterministic (seeded) set of visitors, each with sessions
// designed to exercise the definitions in docs/processing.md: multi-page
// sessions with realistic gaps, returning visitors, sessions split by 30
// minutes of inactivity, by the property's local midnight and by a new
// campaign, a channel mix (direct, organic search, social, paid with utm
// and gclid, email, referral), events and conversions, engagement pings,
// bots, hits from excluded IPs, late hits, duplicate re-sends and malformed
// hits. One visitor in twenty each has a first visit made for a definition
// that is easy to get wrong: a session whose first hit is an event dated
// just before its landing pageview (sent after it, with the page's
// referrer), one pageview with only non-interaction events (a bounce) or
// with an interaction too (none), and a pause of exactly the session
// timeout (one session) or a second more (two; the second Direct). The expected report values (Expectation) are computed from the
// plan's intent — which session each hit was designed to belong to, and
// what that session's channel is — not by running the pipeline's code, so
// the acceptance test compares two independent derivations.
//
// PlayLive is the demo's other traffic: visitors drawn as a plan's are,
// browsing now, each hit sent as it happens, so that the realtime view has
// active users. Nothing is expected of them.
package simulate
