package attribution

import (
	"regexp"
	"strings"

	"github.com/acme/analytics/pkg/rollup"
)

// Channels of GA4's default channel group.
const (
	Direct          = "Direct"
	CrossNetwork    = "Cross-network"
	PaidShopping    = "Paid Shopping"
	PaidSearch      = "Paid Search"
	PaidSocial      = "Paid Social"
	PaidVideo       = "Paid Video"
	Display         = "Display"
	PaidOther       = "Paid Other"
	OrganicShopping = "Organic Shopping"
	OrganicSocial   = "Organic Social"
	OrganicVideo    = "Organic Video"
	OrganicSearch   = "Organic Search"
	Referral        = "Referral"
	Email           = "Email"
	Affiliates      = "Affiliates"
	Audio           = "Audio"
	SMS             = "SMS"
	MobilePush      = "Mobile Push Notifications"
	Unassigned      = "Unassigned"
)

// Values a session gets when it has no source, medium or campaign.
const (
	SourceDirect = "(direct)"
	MediumNone   = "(none)"
	NotSet       = rollup.NotSet
)

var (
	paidMedium       = regexp.MustCompile(`^(.*cp.*|ppc|retargeting|paid.*)$`)
	shoppingCampaign = regexp.MustCompile(`^(.*(([^a-df-z]|^)shop|shopping).*)$`)
)

// DefaultChannel returns GA4's default channel group for a session's
// source, medium and campaign, evaluated top-down, first match wins.
// Matching is case-insensitive.
func DefaultChannel(source, medium, campaign string) string {
	src := strings.ToLower(strings.TrimSpace(source))
	med := strings.ToLower(strings.TrimSpace(medium))
	camp := strings.ToLower(strings.TrimSpace(campaign))
	cat := SourceCategory(src)
	paid := paidMedium.MatchString(med)
	shopCampaign := shoppingCampaign.MatchString(camp)

	switch {
	case src == SourceDirect && (med == NotSet || med == MediumNone || med == ""):
		return Direct
	case strings.Contains(camp, "cross-network"):
		return CrossNetwork
	case (cat == CategoryShopping || shopCampaign) && paid:
		return PaidShopping
	case cat == CategorySearch && paid:
		return PaidSearch
	case cat == CategorySocial && paid:
		return PaidSocial
	case cat == CategoryVideo && paid:
		return PaidVideo
	case oneOf(med, "display", "banner", "expandable", "interstitial", "cpm"):
		return Display
	case paid:
		return PaidOther
	case cat == CategoryShopping || shopCampaign:
		return OrganicShopping
	case cat == CategorySocial || oneOf(med, "social", "social-network", "social-media", "sm", "social network", "social media"):
		return OrganicSocial
	case cat == CategoryVideo || strings.Contains(med, "video"):
		return OrganicVideo
	case cat == CategorySearch || med == "organic":
		return OrganicSearch
	case oneOf(med, "referral", "app", "link"):
		return Referral
	case oneOf(src, "email", "e-mail", "e_mail", "e mail") || oneOf(med, "email", "e-mail", "e_mail", "e mail"):
		return Email
	case med == "affiliate":
		return Affiliates
	case med == "audio":
		return Audio
	case src == "sms" || med == "sms":
		return SMS
	case strings.HasSuffix(med, "push") || strings.Contains(med, "mobile") || strings.Contains(med, "notification") || src == "firebase":
		return MobilePush
	}
	return Unassigned
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}
