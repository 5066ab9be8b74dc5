// Package hit defines a hit as it travels from collection to processing:
// what the client sent, validated, plus what collection added (receive
// time, truncated IP, country, device, bot flag). It is the message format
// of the hits topic and of the raw hit archive.
package hit

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Type is the kind of hit.
type Type string

// Hit types. An engagement ping, sent when a page is hidden or left, extends
// the session it falls in, and so the session's duration and the time on
// page of its last pageview; it never starts a session and is never an
// interaction, so a session of one pageview and pings is still a bounce.
//
// Timing and exception hits are what clients send (t=timing, t=exception);
// collection queues them as the non-interaction events they stand for
// (TypeEvent), since 2026-12-06. Hits of these types are those archived
// before, with no content (it was not read): they stay valid, so that
// reprocessing reads them, and extend the session they fall in as a ping
// does.
const (
	TypePageview   Type = "pageview"
	TypeEvent      Type = "event"
	TypeEngagement Type = "engagement"
	TypeTiming     Type = "timing"
	TypeException  Type = "exception"
)

// Valid reports whether t is a known hit type.
func (t Type) Valid() bool {
	switch t {
	case TypePageview, TypeEvent, TypeEngagement, TypeTiming, TypeException:
		return true
	}
	return false
}

// Origin says how a hit reached us.
type Origin string

const (
	// OriginBrowser is the tracker script or a pixel.
	OriginBrowser Origin = "browser"
	// OriginMeasurement is the server-side Measurement API.
	OriginMeasurement Origin = "mp"
)

// Hit is one validated, enriched hit. Field names on the wire are short
// because billions of these cross Kafka every day.
type Hit struct {
	// ID is stable across re-sends: see DeriveID.
	ID         string    `json:"id"`
	TenantID   string    `json:"tn,omitempty"`  // omitted only by collection's debug answers
	PropertyID string    `json:"pid,omitempty"` // likewise
	TrackingID string    `json:"tid"`
	ClientID   string    `json:"cid"`
	UserID     string    `json:"uid,omitempty"`
	Type       Type      `json:"t"`
	Origin     Origin    `json:"o"`
	Time       time.Time `json:"ts"`  // when it happened: received minus the client's queue time
	ReceivedAt time.Time `json:"rts"` // when collection received it

	// The page.
	URL      string `json:"dl,omitempty"` // document location, as sent
	Hostname string `json:"dh,omitempty"`
	Path     string `json:"dp,omitempty"` // path and query, as sent
	Title    string `json:"dt,omitempty"`
	Referrer string `json:"dr,omitempty"`

	// Events: category/action/label/value (for GA4-style events, the name
	// is the action and the params are kept).
	Category string            `json:"ec,omitempty"`
	Action   string            `json:"ea,omitempty"`
	Label    string            `json:"el,omitempty"`
	Value    float64           `json:"ev,omitempty"`
	HasValue bool              `json:"evs,omitempty"`
	Params   map[string]string `json:"ep,omitempty"`

	// Engagement (et): the milliseconds the page was visible since it was
	// shown or since the previous ping, as the tracker counts them.
	// Processing does not use it today (beyond the hit's ID): time on page
	// is clock time, to the next pageview or, for the session's last, to
	// its last hit (an event or a ping).
	EngagementMS int64 `json:"et,omitempty"`

	// Client and enrichment.
	ScreenResolution string `json:"sr,omitempty"`
	Language         string `json:"ul,omitempty"`
	UserAgent        string `json:"ua,omitempty"`
	Browser          string `json:"br,omitempty"`
	OS               string `json:"os,omitempty"`
	DeviceCategory   string `json:"dc,omitempty"` // desktop, mobile, tablet, smart tv, other
	Country          string `json:"geo,omitempty"`
	IP               string `json:"ip,omitempty"` // truncated (/24, /48) before it leaves collection
	Bot              bool   `json:"bot,omitempty"`
	BotName          string `json:"botn,omitempty"`
	// IPExcludedBy names the IP exclusion rule that matched the full client
	// IP at collection (the full IP is never stored, so this is the only
	// trace of the match); empty when none matched.
	IPExcludedBy string `json:"ipx,omitempty"`
	// RuleVersion is the property's rule version collection evaluated
	// IPExcludedBy against.
	RuleVersion int  `json:"rv,omitempty"`
	Cookieless  bool `json:"ckl,omitempty"`
}

// Parameters of Params that carry a campaign set apart from the document
// location: collection puts a browser hit's cs, cm, cn, ck, cc and gclid
// there, and a Measurement API event may carry them under these (GA4's)
// names. Processing takes them over the location's utm tags.
const (
	ParamCampaignSource  = "campaign_source"
	ParamCampaignMedium  = "campaign_medium"
	ParamCampaignName    = "campaign_name"
	ParamCampaignTerm    = "campaign_term"
	ParamCampaignContent = "campaign_content"
	ParamGCLID           = "gclid"
)

// Key is the Kafka message key for a property with the given processing
// shard count: the property and the visitor's shard. One visitor always maps
// to one partition, so a consumer sees a visitor's hits in order; a small
// property (one shard) lands in a single partition, so its rollup rows have
// a single writer.
func (h *Hit) Key(shards int) []byte {
	return []byte(h.PropertyID + "/" + strconv.Itoa(ShardOf(h.ClientID, shards)))
}

// CutUTF8 is s cut to at most n bytes, at a character boundary: s must be
// valid UTF-8.
func CutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Limits collection keeps a hit's longest fields to, in bytes: what
// processing and the rules' cost model (pkg/rules) may rely on.
const (
	MaxURLBytes       = 4096 // a document location, path or referrer
	MaxUserAgentBytes = 1024 // a user agent, cut to it
)

// ArchiveRetention is how long the raw hit archive keeps a hit: the
// default_time_to_live of raw_hit_blocks_by_hour, raw_hit_blocks and
// raw_hits (396 days, cql/; a test in processing's engine keeps them
// equal). Nothing can process a hit older than that, so it is also how
// long config-svc keeps a rule version after the next one replaced it.
// Reprocessing refuses days older than that less two days, whose archive
// may have expired in part.
const ArchiveRetention = 396 * 24 * time.Hour

// MaxShards bounds a property's processing shards: a property has 1 to
// MaxShards, and its count may be raised or lowered, so a day's archived
// hits may lie in any shard below MaxShards.
const MaxShards = 64

// ShardOf returns the processing shard (0 to n-1) of a client ID among n
// shards; n < 1 counts as 1.
func ShardOf(clientID string, n int) int {
	if n <= 1 {
		return 0
	}
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(clientID); i++ {
		h ^= uint32(clientID[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// DeriveID returns the stable ID of a hit. With a client-supplied event ID
// it is a hash of (property, client, event ID), so any re-send of that event
// has the same ID. Without one it is a hash of the hit's content, with the
// event time truncated to the second; identical hits from one client within
// one second are then the same hit. The content is every field the
// sender gave (page, user ID, event fields, value or none, engagement time,
// custom parameters), not what collection derived from the request nor
// the visitor's context a Measurement API request gives (its address, user
// agent, location and device say who sent the event, not what it is: a
// retry keeps its ID when they differ). The tracker always sends an event
// ID.
func (h *Hit) DeriveID(clientEventID string) string {
	// What is hashed: each part as its length in decimal, ":" and itself.
	var arr [512]byte
	b := arr[:0]
	part := func(p string) {
		b = strconv.AppendInt(b, int64(len(p)), 10)
		b = append(b, ':')
		b = append(b, p...)
	}
	if clientEventID != "" {
		for _, p := range [...]string{"e", h.PropertyID, h.ClientID, clientEventID} {
			part(p)
		}
	} else {
		var num [32]byte
		for _, p := range [...]string{"c", h.PropertyID, h.ClientID, string(h.Type)} {
			part(p)
		}
		part(string(strconv.AppendInt(num[:0], h.Time.Unix(), 10)))
		for _, p := range [...]string{h.URL, h.Path, h.Title, h.Referrer, h.Category, h.Action, h.Label} {
			part(p)
		}
		part(string(strconv.AppendFloat(num[:0], h.Value, 'g', -1, 64)))
		part(string(strconv.AppendInt(num[:0], h.EngagementMS, 10)))
		// What the first version left out, only when there is some, so that
		// the hits it hashed keep their IDs: two events that differ only in
		// a parameter (item_id, non_interaction), the user ID, the host of a
		// hit without a location, or ev=0 against no ev are two events.
		zeroValue := h.HasValue && h.Value == 0
		host := ""
		if h.URL == "" {
			host = h.Hostname
		}
		if h.UserID != "" || host != "" || zeroValue || len(h.Params) > 0 {
			part("+")
			part(h.UserID)
			part(host)
			if zeroValue {
				part("0")
			} else {
				part("")
			}
			// In the order of their names: a map has none.
			names := make([]string, 0, len(h.Params))
			for k := range h.Params {
				names = append(names, k)
			}
			slices.Sort(names)
			for _, k := range names {
				part(k)
				part(h.Params[k])
			}
		}
	}
	sum := sha256.Sum256(b)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// TwinID returns the ID of a hit without a client event ID whose
// content ID (DeriveID) n earlier hits of the same request have: the
// second of two identical events sent together (the same item added to
// the cart twice) is an event of its own, not the first sent twice. It
// depends only on the content ID and n, so the request sent again gives
// its hits the same IDs.
func TwinID(id string, n int) string { return rehash("t:", id, strconv.Itoa(n)) }

// TimedID returns the ID of a hit without a client event ID whose sender
// dated it finer than DeriveID's second (the Measurement API's
// timestamp_micros), micros being the microseconds within that second
// (not 0): two events alike in all else at two instants of one second are
// two events, and a retry, which sends the same time again, keeps its ID.
// It depends only on the content ID and micros.
func TimedID(id string, micros int64) string {
	return rehash("u:", id, strconv.FormatInt(micros, 10))
}

// BustedID returns the ID of a hit without a client event ID that carries
// a cache buster (Universal Analytics' z, a random number sent anew with
// every hit and again with the request re-sent): two hits alike in all
// else with their own z are two hits. It depends only on the content ID
// and z.
func BustedID(id, z string) string { return rehash("z:", id, z) }

// rehash is an ID made of the ID id and suffix, for the use prefix names:
// a hash of prefix, id, ":" and suffix, as DeriveID gives IDs.
func rehash(prefix, id, suffix string) string {
	b := make([]byte, 0, len(prefix)+len(id)+1+len(suffix))
	b = append(append(append(append(b, prefix...), id...), ':'), suffix...)
	sum := sha256.Sum256(b)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// Marshal encodes h for the hits topic and the archive, in the binary
// encoding (binary.go).
func Marshal(h *Hit) ([]byte, error) { return AppendMarshal(nil, h), nil }

// AppendMarshal appends h's encoding to b: a caller encoding many hits
// can reuse one buffer.
func AppendMarshal(b []byte, h *Hit) []byte { return appendBinary(b, h) }

// Unmarshal decodes a hit from the hits topic or the archive, in the
// binary encoding or the JSON one messages had before it, and checks the
// fields every consumer relies on.
func Unmarshal(b []byte) (*Hit, error) {
	var h *Hit
	switch {
	case len(b) > 0 && b[0] == binaryV1:
		var err error
		if h, err = decodeBinary(b[1:]); err != nil {
			return nil, fmt.Errorf("decode hit: %w", err)
		}
	case len(b) > 0 && b[0] == '{':
		h = &Hit{}
		if err := json.Unmarshal(b, h); err != nil {
			return nil, fmt.Errorf("decode hit: %w", err)
		}
	case len(b) == 0:
		return nil, fmt.Errorf("decode hit: empty message")
	default:
		return nil, fmt.Errorf("decode hit: unknown encoding (first byte %#x)", b[0])
	}
	switch {
	case h.ID == "":
		return nil, fmt.Errorf("decode hit: no id")
	case h.PropertyID == "" || h.ClientID == "":
		return nil, fmt.Errorf("decode hit %s: no property or client id", h.ID)
	case !h.Type.Valid():
		return nil, fmt.Errorf("decode hit %s: unknown type %q", h.ID, h.Type)
	case h.Time.IsZero():
		return nil, fmt.Errorf("decode hit %s: no time", h.ID)
	}
	if err := h.mendUTF8(); err != nil {
		return nil, fmt.Errorf("decode hit %q: %w", h.ID, err)
	}
	return h, nil
}

// mendUTF8 makes every text of h valid UTF-8, as collection sends them
// (it checks them, and since 2026-12-07 makes a browser's user agent so):
// an identifier that is not is an error (no other text stands for it),
// any other text has the bytes that are not UTF-8 replaced by U+FFFD.
// Cassandra refuses other bytes in a text column, so a hit holding them
// (an older collection's, another producer's, a corrupt record's) made
// every flush of its partition fail, for good.
func (h *Hit) mendUTF8() error {
	for _, id := range [...]struct{ name, v string }{{"id", h.ID}, {"tenant id", h.TenantID}, {"property id", h.PropertyID},
		{"tracking id", h.TrackingID}, {"client id", h.ClientID}, {"user id", h.UserID}} {
		if !utf8.ValidString(id.v) {
			return fmt.Errorf("its %s is not UTF-8", id.name)
		}
	}
	for _, s := range [...]*string{&h.URL, &h.Hostname, &h.Path, &h.Title, &h.Referrer, &h.Category, &h.Action, &h.Label,
		&h.ScreenResolution, &h.Language, &h.UserAgent, &h.Browser, &h.OS, &h.DeviceCategory, &h.Country, &h.IP, &h.BotName, &h.IPExcludedBy} {
		mendString(s)
	}
	for k, v := range h.Params {
		if utf8.ValidString(k) && utf8.ValidString(v) {
			continue
		}
		delete(h.Params, k) // a key mended is another key, visited or not: both are then valid
		mendString(&k)
		mendString(&v)
		h.Params[k] = v
	}
	return nil
}

// mendString replaces the bytes of *s that are not UTF-8 by U+FFFD.
func mendString(s *string) {
	if !utf8.ValidString(*s) {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
}

// Topics of the pipeline.
const (
	// TopicHits carries accepted hits, keyed by Key.
	TopicHits = "hits"
	// TopicDeadLetter carries rejected hits and poison messages with the
	// reason, as DeadLetter values.
	TopicDeadLetter = "hits-dead-letter"
)

// Stages of a dead letter (DeadLetter.Stage): which service rejected it.
const (
	StageCollection = "collection"
	StageProcessing = "processing"
)

// DeadLetter is a message on TopicDeadLetter, as JSON (MarshalJSON).
type DeadLetter struct {
	Reason     string    `json:"reason"` // stable machine-readable reason, e.g. "unknown_tracking_id"
	Detail     string    `json:"detail"` // what exactly was wrong
	Stage      string    `json:"stage"`  // StageCollection or StageProcessing
	TrackingID string    `json:"tid,omitempty"`
	ReceivedAt time.Time `json:"rts"`
	Payload    string    `json:"payload"` // the rejected input as received (IP never included); see PayloadText
	// For messages rejected by processing: where they were in the hits
	// topic, which identifies a dead letter produced twice by a replay.
	// In JSON exactly in a processing letter, 0 included (MarshalJSON).
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// MarshalJSON writes a processing letter with its source partition and
// offset, even partition 0 or offset 0, and any other letter (a collection
// letter: it never was in the hits topic) without them. Decoding needs no
// method of its own: letters written before, which left out a 0, decode
// with the 0 they left out.
//
// A type embedding DeadLetter gets this method too, and with it would be
// written as its DeadLetter alone: such a type needs a MarshalJSON of its
// own (deadletters.Letter has).
func (d DeadLetter) MarshalJSON() ([]byte, error) {
	// deadLetterFields is DeadLetter without this method; the pointer
	// fields, shallower, take the place of its Partition and Offset in
	// JSON, present or absent by Stage rather than by being zero.
	type deadLetterFields DeadLetter
	w := struct {
		deadLetterFields
		Partition *int32 `json:"partition,omitempty"`
		Offset    *int64 `json:"offset,omitempty"`
	}{deadLetterFields: deadLetterFields(d)}
	if d.Stage == StageProcessing {
		w.Partition, w.Offset = &d.Partition, &d.Offset
	}
	return json.Marshal(w)
}

// PayloadText is a rejected message as a dead letter's Payload: the bytes
// themselves when they are text (JSON), else "base64:" and their standard
// base64 (a binary-encoded hit).
func PayloadText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

// PayloadBytes is the inverse of PayloadText: the bytes of a dead letter's
// Payload. It fails only for a "base64:" payload that is not base64.
func PayloadBytes(payload string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(payload, "base64:"); ok {
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, fmt.Errorf("dead letter payload: %w", err)
		}
		return b, nil
	}
	return []byte(payload), nil
}
