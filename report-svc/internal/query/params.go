package query

import (
	"errors"
	"net/url"
	"strings"

	"github.com/acme/analytics/pkg/queryparam"
)

// Param is a query parameter that an endpoint accepts.
type Param = queryparam.Param

// Params are the query parameters of one request to an endpoint, checked
// against the list of those it accepts (see queryparam.Values).
type Params = queryparam.Values

// ParseParams parses the raw query string of a request to endpoint (its
// path, for messages) that accepts the parameters in accepted, as
// queryparam.Parse does: a pair that cannot be read (malformed_query), a
// parameter that is not accepted (unknown_parameter: a misspelt name, or
// GA's filters or start_date, would be ignored and another report than the
// one asked for served) and one given more than once that is not
// Repeatable (repeated_parameter) are refused with a *ParamError. An
// unknown name that other analytics APIs use is answered with ours, and a
// filter with an unencoded ";" with the filter encoded.
func ParseParams(raw, endpoint string, accepted []Param) (*Params, error) {
	v, err := queryparam.Parse(raw, endpoint, accepted, paramAliases)
	var pe *ParamError
	if errors.As(err, &pe) && pe.Code == queryparam.CodeMalformed && pe.Field == "filter" && strings.Contains(pe.Pair, ";") {
		_, value, _ := strings.Cut(pe.Pair, "=")
		if u, uerr := url.QueryUnescape(value); uerr == nil {
			value = u
		}
		return nil, paramErr("filter", queryparam.CodeMalformed,
			"filter has an unencoded \";\" (%s). In a filter, ; means AND and must be URL-encoded as %%3B, as the whole expression should be: filter=%s (or send one filter parameter per condition)",
			pe.Pair, url.QueryEscape(value))
	}
	return v, err
}

// paramAliases are names that other analytics APIs (GA's Core Reporting
// API, GA4's Data API) or habit give parameters of ours.
var paramAliases = map[string]string{
	"filters": "filter", "dimension": "dimensions", "metric": "metrics",
	"start_date": "from", "start-date": "from", "startdate": "from", "from_date": "from", "since": "from",
	"end_date": "to", "end-date": "to", "enddate": "to", "to_date": "to", "until": "to",
	"date_range": "range", "date-range": "range", "daterange": "range", "preset": "range",
	"max-results": "limit", "max_results": "limit", "maxresults": "limit", "page_size": "limit", "pagesize": "limit",
	"start-index": "offset", "start_index": "offset", "startindex": "offset",
	"order": "sort", "order_by": "sort", "orderby": "sort", "order_bys": "sort", "orderbys": "sort",
	"ids": "property_id", "property": "property_id", "propertyid": "property_id", "property-id": "property_id",
	"output": "format",
}
