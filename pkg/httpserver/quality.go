package httpserver

import (
	"strconv"
	"strings"
)

// Quality returns the quality that headers of the Accept family (Accept,
// Accept-Encoding) give name, from the first entry naming it (case aside):
// its q parameter, 1 without one, 0 when that is not a number; and
// whether an entry names it at all.
func Quality(values []string, name string) (float64, bool) {
	for _, h := range values {
		for _, part := range strings.Split(h, ",") {
			media, params, _ := strings.Cut(part, ";")
			if !strings.EqualFold(strings.TrimSpace(media), name) {
				continue
			}
			for _, p := range strings.Split(params, ";") {
				if k, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					if err != nil {
						return 0, true
					}
					return q, true
				}
			}
			return 1, true
		}
	}
	return 0, false
}
