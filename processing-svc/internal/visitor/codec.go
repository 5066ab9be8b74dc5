package visitor

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/wire"
	"github.com/acme/analytics/processing-svc/internal/session"
)

// The durable state is written on every flush for every visitor with new
// hits, so it has a compact binary encoding (pkg/wire's representations).
// Version 1, after the version byte: ClientID, FrozenSessions,
// FrozenUntil, FirstSeen, FirstTouch (source, medium, campaign, channel),
// LastSeen, Watermark, PrunedAt; the hits (a count, then each hit); Seen
// (a count, then ID and time pairs in ID order). States written before it
// are JSON, and still read: Unmarshal tells them apart by the first byte.
const stateV1 = 0xC1

// Marshal encodes the durable state.
func (v *Visitor) Marshal() ([]byte, error) {
	b := make([]byte, 0, 64+len(v.Hits)*96+len(v.Seen)*48)
	b = append(b, stateV1)
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
	for _, h := range v.Hits {
		b = appendHit(b, h)
	}
	ids := make([]string, 0, len(v.Seen))
	for id := range v.Seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b = wire.AppendUint(b, uint64(len(ids)))
	for _, id := range ids {
		b = wire.AppendString(b, id)
		b = wire.AppendTime(b, v.Seen[id])
	}
	return b, nil
}

func appendHit(b []byte, h *session.Hit) []byte {
	for _, s := range [...]string{h.ID, string(h.Type)} {
		b = wire.AppendString(b, s)
	}
	b = wire.AppendTime(b, h.Time)
	c := h.Campaign
	for _, s := range [...]string{h.Path, h.Title, h.Referrer, c.Source, c.Medium, c.Name, c.Term, c.Content, c.GCLID, c.MSCLKID,
		h.Category, h.Action, h.Label} {
		b = wire.AppendString(b, s)
	}
	b = wire.AppendFloat(b, h.Value)
	b = wire.AppendBool(b, h.Interaction)
	b = wire.AppendUint(b, uint64(len(h.Goals)))
	for _, g := range h.Goals {
		b = wire.AppendString(b, g.ID)
		b = wire.AppendFloat(b, g.Value)
	}
	for _, s := range [...]string{h.Country, h.Device, h.Browser, h.OS} {
		b = wire.AppendString(b, s)
	}
	return wire.AppendInt(b, int64(h.RuleVersion))
}

// Unmarshal decodes a durable state written by Marshal (or, before the
// binary encoding, as JSON).
func Unmarshal(b []byte) (*Visitor, error) {
	v := &Visitor{}
	switch {
	case len(b) > 0 && b[0] == stateV1:
		if err := v.decode(wire.NewReader(b[1:])); err != nil {
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

func (v *Visitor) decode(r *wire.Reader) error {
	v.ClientID = r.String()
	v.FrozenSessions = int(r.Int())
	v.FrozenUntil, v.FirstSeen = r.Time(), r.Time()
	v.FirstTouch = Touch{Source: r.String(), Medium: r.String(), Campaign: r.String(), Channel: r.String()}
	v.LastSeen, v.Watermark, v.PrunedAt = r.Time(), r.Time(), r.Time()
	if n := r.Count(16); n > 0 {
		v.Hits = make([]*session.Hit, n)
		for i := range v.Hits {
			v.Hits[i] = readHit(r)
		}
	}
	n := r.Count(3)
	v.Seen = make(map[string]time.Time, n)
	for range n {
		id := r.String()
		v.Seen[id] = r.Time()
	}
	return r.Err()
}

func readHit(r *wire.Reader) *session.Hit {
	h := &session.Hit{ID: r.String(), Type: hit.Type(r.String()), Time: r.Time()}
	c := &h.Campaign
	for _, s := range [...]*string{&h.Path, &h.Title, &h.Referrer, &c.Source, &c.Medium, &c.Name, &c.Term, &c.Content, &c.GCLID, &c.MSCLKID,
		&h.Category, &h.Action, &h.Label} {
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
