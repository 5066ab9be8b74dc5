package visitor

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/wire"
	"github.com/acme/analytics/processing-svc/internal/session"
)

// The durable state is written whenever the visitor is due (about once per
// visit) and is the largest value the processor writes, so it has a compact
// binary encoding (pkg/wire's representations).
//
// Version 2, after the version byte: ClientID, FrozenSessions,
// FrozenUntil, FirstSeen, FirstTouch (source, medium, campaign, channel),
// LastSeen, Watermark, PrunedAt; the hits (a count, then each hit, see
// appendHit); then the entries of Seen that no hit stands for (a count,
// then ID and time pairs in ID order). A hit stands for the Seen entry of
// its own ID at its own time, which is every live hit's while it is young
// enough to be re-sent, so a live hit's ID is written once.
//
// Version 3 (a PerDay visitor, since 2026-12-07) is version 2 followed by
// BaseSessions, BaseLast and FrozenDays (a count, then each day's date,
// sessions and last end). A visitor read in version 2 is written in
// version 2 until it is converted (ConvertPerDay).
//
// Version 1 wrote every hit's fields in full and all of Seen, and states
// before it are JSON; both are still read (Unmarshal tells them apart by
// the first byte), and the next write of a visitor replaces them.
const (
	stateV1 = 0xC1
	stateV2 = 0xC2
	stateV3 = 0xC3
)

// Marshal encodes the durable state.
func (v *Visitor) Marshal() ([]byte, error) {
	b := make([]byte, 0, 64+len(v.Hits)*64+len(v.Seen)*24)
	version := byte(stateV2)
	if v.PerDay {
		version = stateV3
	}
	b = append(b, version)
	b = wire.AppendString(b, v.ClientID)
	b = wire.AppendInt(b, int64(v.FrozenSessions))
	for _, t := range [...]time.Time{v.FrozenUntil, v.FirstSeen} {
		b = wire.AppendTime(b, t)
	}
	for _, s := range [...]string{v.FirstTouch.Source, v.FirstTouch.Medium, v.FirstTouch.Campaign, v.FirstTouch.Channel} {
		b = wire.AppendString(b, s)
	}
	for _, t := range [...]time.Time{v.LastSeen, v.Watermark, v.PrunedAt} {
		b = wire.AppendTime(b, t)
	}
	b = wire.AppendUint(b, uint64(len(v.Hits)))
	var prev *session.Hit
	var covered []string // the IDs of the Seen entries the hits stand for
	for _, h := range v.Hits {
		var seen bool
		b, seen = v.appendHit(b, h, prev)
		if seen {
			covered = append(covered, h.ID)
		}
		prev = h
	}
	slices.Sort(covered)
	var ids []string
	for id := range v.Seen {
		if _, ok := slices.BinarySearch(covered, id); !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	b = wire.AppendUint(b, uint64(len(ids)))
	for _, id := range ids {
		b = appendID(b, id)
		b = wire.AppendTime(b, v.Seen[id])
	}
	if v.PerDay {
		b = wire.AppendInt(b, int64(v.BaseSessions))
		b = wire.AppendTime(b, v.BaseLast)
		b = wire.AppendUint(b, uint64(len(v.FrozenDays)))
		for _, d := range v.FrozenDays {
			b = wire.AppendTime(b, d.Day)
			b = wire.AppendInt(b, int64(d.Sessions))
			b = wire.AppendTime(b, d.Last)
		}
	}
	return b, nil
}

// A hit's flags (version 2): what follows its ID, type and time.
const (
	flagSeen        = 1 << iota // Seen holds the hit's ID at its time
	flagSameDevice              // country, device, browser and OS as the hit before
	flagInteraction             // Interaction
	flagValue                   // a Value other than +0 follows
	flagGoals                   // goals follow
	flagStrings                 // the first of the optional strings' bits (hitStrings)
)

// hitStrings are a hit's optional strings, in the order of their flags;
// only the non-empty ones are written.
func hitStrings(h *session.Hit) [numHitStrings]*string {
	c := &h.Campaign
	return [...]*string{&h.Path, &h.Title, &h.Referrer, &c.Source, &c.Medium, &c.Name, &c.Term, &c.Content, &c.GCLID, &c.MSCLKID,
		&h.Category, &h.Action, &h.Label}
}

const (
	numHitStrings = 13
	allFlags      = flagStrings<<numHitStrings - 1
)

// hitTypes are the hit types written as their index plus one; another
// type is written as 0 and its name.
var hitTypes = [...]hit.Type{hit.TypePageview, hit.TypeEvent, hit.TypeEngagement, hit.TypeTiming, hit.TypeException}

// appendHit appends h (version 2): flags, ID, type, time, the non-empty
// optional strings, value, goals, the enrichment unless it is prev's, and
// the rule version. It reports whether h stands for its Seen entry.
func (v *Visitor) appendHit(b []byte, h, prev *session.Hit) ([]byte, bool) {
	var flags uint64
	if t, ok := v.Seen[h.ID]; ok && t.Equal(h.Time) {
		flags |= flagSeen
	}
	if prev != nil && h.Country == prev.Country && h.Device == prev.Device && h.Browser == prev.Browser && h.OS == prev.OS {
		flags |= flagSameDevice
	}
	if h.Interaction {
		flags |= flagInteraction
	}
	if math.Float64bits(h.Value) != 0 {
		flags |= flagValue
	}
	if len(h.Goals) > 0 {
		flags |= flagGoals
	}
	strs := hitStrings(h)
	for i, s := range strs {
		if *s != "" {
			flags |= flagStrings << i
		}
	}
	b = wire.AppendUint(b, flags)
	b = appendID(b, h.ID)
	if i := slices.Index(hitTypes[:], h.Type); i >= 0 {
		b = wire.AppendUint(b, uint64(i+1))
	} else {
		b = wire.AppendUint(b, 0)
		b = wire.AppendString(b, string(h.Type))
	}
	b = wire.AppendTime(b, h.Time)
	for _, s := range strs {
		if *s != "" {
			b = wire.AppendString(b, *s)
		}
	}
	if flags&flagValue != 0 {
		b = wire.AppendFloat(b, h.Value)
	}
	if flags&flagGoals != 0 {
		b = wire.AppendUint(b, uint64(len(h.Goals)))
		for _, g := range h.Goals {
			b = wire.AppendString(b, g.ID)
			b = wire.AppendFloat(b, g.Value)
		}
	}
	if flags&flagSameDevice == 0 {
		for _, s := range [...]string{h.Country, h.Device, h.Browser, h.OS} {
			b = wire.AppendString(b, s)
		}
	}
	return wire.AppendInt(b, int64(h.RuleVersion)), flags&flagSeen != 0
}

// appendID appends a hit ID. IDs are almost always the 32 lowercase hex
// digits of hit.DeriveID, written as their 16 bytes: 1 then the bytes.
// Any other ID is written as twice its length, then its bytes.
func appendID(b []byte, id string) []byte {
	if raw, ok := hexID(id); ok {
		return append(wire.AppendUint(b, 1), raw[:]...)
	}
	b = wire.AppendUint(b, 2*uint64(len(id)))
	return append(b, id...)
}

func hexID(id string) (raw [16]byte, ok bool) {
	if len(id) != 32 {
		return raw, false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return raw, false
		}
	}
	_, err := hex.Decode(raw[:], []byte(id))
	return raw, err == nil
}

func readID(r *wire.Reader) string {
	switch n := r.Uint(); {
	case n == 1:
		return hex.EncodeToString(r.Next(16))
	case n%2 == 1:
		r.Fail(fmt.Errorf("hit ID form %d", n))
		return ""
	case n/2 > uint64(r.Remaining()):
		r.Fail(wire.ErrTruncated)
		return ""
	default:
		return string(r.Next(int(n / 2)))
	}
}

// Unmarshal decodes a durable state written by Marshal (or by an earlier
// version: version 1, or JSON).
func Unmarshal(b []byte) (*Visitor, error) {
	v := &Visitor{}
	switch {
	case len(b) > 0 && (b[0] == stateV1 || b[0] == stateV2 || b[0] == stateV3):
		if err := v.decode(wire.NewReader(b[1:]), b[0]); err != nil {
			return nil, fmt.Errorf("decode visitor state: %w", err)
		}
	case len(b) > 0 && b[0] == '{':
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("decode visitor state: %w", err)
		}
	default:
		return nil, fmt.Errorf("decode visitor state: unknown encoding (%d bytes)", len(b))
	}
	if v.Seen == nil {
		v.Seen = map[string]time.Time{}
	}
	return v, nil
}

func (v *Visitor) decode(r *wire.Reader, version byte) error {
	v.ClientID = r.String()
	v.FrozenSessions = int(r.Int())
	v.FrozenUntil, v.FirstSeen = r.Time(), r.Time()
	v.FirstTouch = Touch{Source: r.String(), Medium: r.String(), Campaign: r.String(), Channel: r.String()}
	v.LastSeen, v.Watermark, v.PrunedAt = r.Time(), r.Time(), r.Time()
	var seen []*session.Hit // the hits that stand for their Seen entries
	if n := r.Count(5); n > 0 {
		v.Hits = make([]*session.Hit, n)
		for i := range v.Hits {
			if version == stateV1 {
				v.Hits[i] = readHitV1(r)
				continue
			}
			var prev *session.Hit
			if i > 0 {
				prev = v.Hits[i-1]
			}
			h, flagged := readHit(r, prev)
			v.Hits[i] = h
			if flagged {
				seen = append(seen, h)
			}
		}
	}
	n := r.Count(3)
	v.Seen = make(map[string]time.Time, n+len(seen))
	for _, h := range seen {
		v.Seen[h.ID] = h.Time
	}
	for range n {
		var id string
		if version == stateV1 {
			id = r.String()
		} else {
			id = readID(r)
		}
		v.Seen[id] = r.Time()
	}
	if version == stateV3 {
		v.PerDay = true
		v.BaseSessions, v.BaseLast = int(r.Int()), r.Time()
		if n := r.Count(3); n > 0 {
			v.FrozenDays = make([]DaySessions, n)
			for i := range v.FrozenDays {
				v.FrozenDays[i] = DaySessions{Day: r.Time(), Sessions: int(r.Int()), Last: r.Time()}
			}
		}
	}
	return r.Err()
}

// readHit reads a hit written by appendHit, and whether it stands for its
// Seen entry.
func readHit(r *wire.Reader, prev *session.Hit) (*session.Hit, bool) {
	flags := r.Uint()
	if flags&^allFlags != 0 || prev == nil && flags&flagSameDevice != 0 {
		r.Fail(fmt.Errorf("hit flags %#x", flags))
		return &session.Hit{}, false
	}
	h := &session.Hit{ID: readID(r)}
	switch t := r.Uint(); {
	case t == 0:
		h.Type = hit.Type(r.String())
	case t <= uint64(len(hitTypes)):
		h.Type = hitTypes[t-1]
	default:
		r.Fail(fmt.Errorf("hit type %d", t))
	}
	h.Time = r.Time()
	for i, s := range hitStrings(h) {
		if flags&(flagStrings<<i) != 0 {
			*s = r.String()
		}
	}
	if flags&flagValue != 0 {
		h.Value = r.Float()
	}
	h.Interaction = flags&flagInteraction != 0
	if flags&flagGoals != 0 {
		h.Goals = make([]session.Goal, r.Count(9))
		for i := range h.Goals {
			h.Goals[i] = session.Goal{ID: r.String(), Value: r.Float()}
		}
	}
	if flags&flagSameDevice != 0 {
		h.Country, h.Device, h.Browser, h.OS = prev.Country, prev.Device, prev.Browser, prev.OS
	} else {
		for _, s := range [...]*string{&h.Country, &h.Device, &h.Browser, &h.OS} {
			*s = r.String()
		}
	}
	h.RuleVersion = int(r.Int())
	return h, flags&flagSeen != 0
}

// readHitV1 reads a hit of a version 1 state: every field in full.
func readHitV1(r *wire.Reader) *session.Hit {
	h := &session.Hit{ID: r.String(), Type: hit.Type(r.String()), Time: r.Time()}
	for _, s := range hitStrings(h) {
		*s = r.String()
	}
	h.Value = r.Float()
	h.Interaction = r.Bool()
	if n := r.Count(9); n > 0 {
		h.Goals = make([]session.Goal, n)
		for i := range h.Goals {
			h.Goals[i] = session.Goal{ID: r.String(), Value: r.Float()}
		}
	}
	for _, s := range [...]*string{&h.Country, &h.Device, &h.Browser, &h.OS} {
		*s = r.String()
	}
	h.RuleVersion = int(r.Int())
	return h
}
