// Package attribution decides where a session came from: its source,
// medium and campaign (from click IDs, utm tags or the referrer, in that
// order of precedence) and its channel (the property's custom channel rules
// first, then GA4's default channel group).
//
// The rules are written out in docs/processing.md; the tests here are the
// executable form of that table.
package attribution
