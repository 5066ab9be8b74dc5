package rules

// Rules is one version of a property's rules as merchants write it (JSON).
// The zero value is not the default: new properties start from Defaults, and
// config-svc decodes a submitted document over Defaults, so a field left out
// keeps its default.
type Rules struct {
	// Exclusions drop hits before anything is counted.
	Exclusions Exclusions `json:"exclusions"`
	// PagePath cleans up page paths before they are reported.
	PagePath PagePath `json:"page_path"`
	// Pages includes or excludes pages by their cleaned path.
	Pages Pages `json:"pages"`
	// BotFiltering drops hits that collection flagged as coming from a
	// known crawler.
	BotFiltering bool `json:"bot_filtering"`
	// IPAnonymization says how much of the client IP may be stored.
	IPAnonymization Anonymization `json:"ip_anonymization"`
	// SessionTimeoutMinutes is the inactivity after which a session ends.
	SessionTimeoutMinutes int `json:"session_timeout_minutes"`
	// ReferralExclusions are domains (with their subdomains) whose referrals
	// neither set attribution nor start a session, e.g. payment providers.
	// The property's own hostnames are always excluded.
	ReferralExclusions []string `json:"referral_exclusions"`
	// Goals are the conversions of the property.
	Goals []Goal `json:"goals"`
	// Channels are custom channel rules, evaluated in order before the
	// default channel group; the first match wins.
	Channels []ChannelRule `json:"channels"`
}

// Exclusions drop traffic by who sends it.
type Exclusions struct {
	// IP lists addresses ("203.0.113.7") and CIDR prefixes
	// ("10.0.0.0/8", "2001:db8::/32"), matched against the full client IP
	// at collection.
	IP []string `json:"ip"`
	// UserAgents are patterns matched case-insensitively against the
	// user agent.
	UserAgents []string `json:"user_agents"`
	// Countries are ISO 3166-1 alpha-2 codes in upper case ("DE").
	Countries []string `json:"countries"`
}

// PagePath is the page path clean-up pipeline. The steps run in the order
// of the fields below; see (*Compiled).CleanPath.
type PagePath struct {
	// StripQuery drops query parameters except KeepParams and the
	// attribution parameters (utm_*, gclid, gbraid, wbraid, msclkid, dclid,
	// fbclid), which are always kept.
	StripQuery bool `json:"strip_query"`
	// KeepParams are query parameter names kept when StripQuery is on.
	KeepParams []string `json:"keep_params"`
	// Lowercase lowercases the path (never the query string).
	Lowercase bool `json:"lowercase"`
	// DefaultPage is the file a server serves for a directory, e.g.
	// "index.html": "/docs/index.html" is then reported as "/docs/".
	DefaultPage string `json:"default_page"`
	// Replacements are applied in order to the path.
	Replacements []Replacement `json:"replacements"`
	// StripTrailingSlash reports "/docs/" as "/docs" (never "/" itself).
	StripTrailingSlash bool `json:"strip_trailing_slash"`
}

// Replacement is a regular-expression search-and-replace on the path.
// Replace may refer to groups as ${1} or ${name}.
type Replacement struct {
	Pattern string `json:"pattern"`
	Replace string `json:"replace"`
}

// Pages selects the pages that are reported. Patterns are matched against
// the cleaned path without its query string.
type Pages struct {
	// Include, when not empty, keeps only pages matching one of them.
	Include []string `json:"include"`
	// Exclude drops pages matching any of them (after Include).
	Exclude []string `json:"exclude"`
}

// Goal is a conversion: a pageview whose cleaned path matches PagePath, or
// an event matching Event. Exactly one of the two is set.
type Goal struct {
	// ID is stable across versions and names the goal in reports:
	// lowercase letters, digits, '-' and '_', at most 64 characters.
	ID   string `json:"id"`
	Name string `json:"name"`
	// PagePath is a pattern matched against the cleaned path without its
	// query string.
	PagePath string      `json:"page_path,omitempty"`
	Event    *EventMatch `json:"event,omitempty"`
	// Value of one conversion. When absent, an event goal takes the
	// event's own value and a page goal is worth 0.
	Value *float64 `json:"value,omitempty"`
}

// EventMatch matches an event by its category and action, exactly (case
// sensitive); an empty field matches anything, but not both may be empty.
type EventMatch struct {
	Category string `json:"category,omitempty"`
	Action   string `json:"action,omitempty"`
}

// ChannelRule assigns Name as the channel of a session whose source,
// medium and campaign match every pattern given (case-insensitive); at
// least one pattern is required.
type ChannelRule struct {
	Name     string `json:"name"`
	Source   string `json:"source,omitempty"`
	Medium   string `json:"medium,omitempty"`
	Campaign string `json:"campaign,omitempty"`
}

// Defaults returns the rules of a new property: bot filtering on, standard
// IP anonymization, 30-minute sessions, paths reported as sent.
func Defaults() Rules {
	return Rules{
		BotFiltering:          true,
		IPAnonymization:       AnonymizeStandard,
		SessionTimeoutMinutes: 30,
	}
}

// Exclusion reasons returned by (*Compiled).Exclusion, plus ReasonPage for a
// page that PageIncluded rejects. They are stable: reports of filtered
// traffic group by them.
const (
	ReasonIP          = "ip"
	ReasonUserAgent   = "user_agent"
	ReasonCountry     = "country"
	ReasonForeignHost = "foreign_host"
	ReasonBot         = "bot"
	ReasonPage        = "page"
)

// Normalize returns r with every absent list as an empty one, so that two
// documents that mean the same compare equal and encode alike (lists as
// [] rather than null).
func (r Rules) Normalize() Rules {
	orEmpty := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	r.Exclusions.IP = orEmpty(r.Exclusions.IP)
	r.Exclusions.UserAgents = orEmpty(r.Exclusions.UserAgents)
	r.Exclusions.Countries = orEmpty(r.Exclusions.Countries)
	r.PagePath.KeepParams = orEmpty(r.PagePath.KeepParams)
	if r.PagePath.Replacements == nil {
		r.PagePath.Replacements = []Replacement{}
	}
	r.Pages.Include = orEmpty(r.Pages.Include)
	r.Pages.Exclude = orEmpty(r.Pages.Exclude)
	r.ReferralExclusions = orEmpty(r.ReferralExclusions)
	if r.Goals == nil {
		r.Goals = []Goal{}
	}
	if r.Channels == nil {
		r.Channels = []ChannelRule{}
	}
	return r
}
