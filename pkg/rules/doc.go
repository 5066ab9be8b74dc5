// Package rules is a property's filter and clean-up rules: the JSON document
// a merchant edits through config-svc, its validation, and the compiled form
// that collection and processing evaluate on every hit.
//
// config-svc validates a document with exactly the compile step the pipeline
// runs (Compile), so a rule set that config-svc accepted always compiles in
// the pipeline, and one that would be too expensive to evaluate per hit is
// refused when it is saved rather than discovered in production.
//
// A Rules value is one immutable version of a property's rules. config-svc
// stores every version with the time it took effect (see
// pkg/configclient.RuleVersion); reprocessing compiles the version that was in
// effect when a hit was received, or today's, as asked.
//
// # Evaluation
//
// Collection, on the full client IP and only in flight:
//
//	ruleID, ok := c.MatchIP(addr) // set hit.IPExcludedBy = ruleID, hit.RuleVersion = c.Version()
//	addr, ok = c.IPAnonymization().Apply(addr) // what may be stored
//
// Processing, per hit, in this order:
//
//	reason, excluded := c.Exclusion(h) // ip, user_agent, country, foreign_host, bot
//	path := c.CleanPath(h.Path)
//	if !c.PageIncluded(path) { ... }   // ReasonPage
//	goals := c.Goals(h, path)
//	channel, ok := c.Channel(source, medium, campaign) // before the default channel group
//	c.SessionTimeout(); c.ReferralExcluded(host)
//
// Every pattern in a document is an RE2 regular expression (Go's regexp
// syntax): it matches anywhere in the value unless anchored with ^ and $.
// docs/config.md is the merchant-facing reference of every field.
package rules
