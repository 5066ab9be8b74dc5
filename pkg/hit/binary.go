package hit

import (
	"fmt"
	"math"
	"slices"

	"github.com/acme/analytics/pkg/wire"
)

// The hits topic and the raw archive carry hits in a compact binary
// encoding: collection encodes every accepted hit and processing decodes
// it again, billions of times a day, and reflection-based JSON cost each
// of them several times what this does. Messages written before it (JSON)
// are still read: Unmarshal tells the two apart by their first byte.
//
// Version 1, after the version byte, in this order: the strings ID,
// TenantID, PropertyID, TrackingID, ClientID, UserID, Type and Origin;
// the times Time and ReceivedAt; the strings URL, Hostname, Path, Title,
// Referrer, Category, Action and Label; Value (8 bytes, IEEE 754 little
// endian); Params (a count, then key and value strings in key order);
// EngagementMS; the strings ScreenResolution, Language, UserAgent,
// Browser, OS, DeviceCategory, Country, IP, BotName and IPExcludedBy;
// RuleVersion; and one byte of flags (HasValue 1, Bot 2, Cookieless 4).
// Strings, integers, times and the float are in pkg/wire's representation.
// A later version adds fields by taking the next version byte.
const binaryV1 = 0xB1

const (
	flagHasValue = 1 << iota
	flagBot
	flagCookieless
)

// appendBinary appends h's version-1 encoding to b.
func appendBinary(b []byte, h *Hit) []byte {
	b = slices.Grow(b, sizeHint(h))
	b = append(b, binaryV1)
	for _, s := range [...]string{h.ID, h.TenantID, h.PropertyID, h.TrackingID, h.ClientID, h.UserID, string(h.Type), string(h.Origin)} {
		b = wire.AppendString(b, s)
	}
	b = wire.AppendTime(b, h.Time)
	b = wire.AppendTime(b, h.ReceivedAt)
	for _, s := range [...]string{h.URL, h.Hostname, h.Path, h.Title, h.Referrer, h.Category, h.Action, h.Label} {
		b = wire.AppendString(b, s)
	}
	b = wire.AppendFloat(b, h.Value)
	b = wire.AppendUint(b, uint64(len(h.Params)))
	if len(h.Params) > 0 {
		keys := make([]string, 0, len(h.Params))
		for k := range h.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = wire.AppendString(b, k)
			b = wire.AppendString(b, h.Params[k])
		}
	}
	b = wire.AppendInt(b, h.EngagementMS)
	for _, s := range [...]string{h.ScreenResolution, h.Language, h.UserAgent, h.Browser, h.OS, h.DeviceCategory, h.Country, h.IP, h.BotName, h.IPExcludedBy} {
		b = wire.AppendString(b, s)
	}
	b = wire.AppendInt(b, int64(h.RuleVersion))
	var flags byte
	if h.HasValue {
		flags |= flagHasValue
	}
	if h.Bot {
		flags |= flagBot
	}
	if h.Cookieless {
		flags |= flagCookieless
	}
	return append(b, flags)
}

// sizeHint is about the encoded size of h (a little more): growing the
// buffer once is most of the encoder's cost otherwise.
func sizeHint(h *Hit) int {
	n := 64 // the version byte, times, value, integers, flags and lengths of short strings
	for _, s := range [...]string{h.ID, h.TenantID, h.PropertyID, h.TrackingID, h.ClientID, h.UserID, h.URL, h.Hostname, h.Path, h.Title,
		h.Referrer, h.Category, h.Action, h.Label, h.ScreenResolution, h.Language, h.UserAgent, h.Browser, h.OS, h.DeviceCategory,
		h.Country, h.IP, h.BotName, h.IPExcludedBy} {
		n += len(s) + 1
	}
	for k, v := range h.Params {
		n += len(k) + len(v) + 4
	}
	return n + 16
}

// decodeBinary decodes a version-1 encoding (b without its version byte).
func decodeBinary(b []byte) (*Hit, error) {
	r := wire.NewReader(b)
	h := &Hit{}
	for _, s := range [...]*string{&h.ID, &h.TenantID, &h.PropertyID, &h.TrackingID, &h.ClientID, &h.UserID} {
		*s = r.String()
	}
	h.Type, h.Origin = Type(r.String()), Origin(r.String())
	h.Time, h.ReceivedAt = r.Time(), r.Time()
	for _, s := range [...]*string{&h.URL, &h.Hostname, &h.Path, &h.Title, &h.Referrer, &h.Category, &h.Action, &h.Label} {
		*s = r.String()
	}
	h.Value = r.Float()
	if n := r.Count(2); n > 0 {
		h.Params = make(map[string]string, n)
		for range n {
			k := r.String()
			h.Params[k] = r.String()
		}
	}
	h.EngagementMS = r.Int()
	for _, s := range [...]*string{&h.ScreenResolution, &h.Language, &h.UserAgent, &h.Browser, &h.OS, &h.DeviceCategory, &h.Country, &h.IP, &h.BotName, &h.IPExcludedBy} {
		*s = r.String()
	}
	rv := r.Int()
	if rv < math.MinInt32 || rv > math.MaxInt32 {
		r.Fail(fmt.Errorf("rule version %d out of range", rv))
	}
	h.RuleVersion = int(rv)
	flags := r.Byte()
	if flags&^(flagHasValue|flagBot|flagCookieless) != 0 {
		r.Fail(fmt.Errorf("unknown flags %#x", flags))
	}
	h.HasValue, h.Bot, h.Cookieless = flags&flagHasValue != 0, flags&flagBot != 0, flags&flagCookieless != 0
	if err := r.Err(); err != nil {
		return nil, err
	}
	return h, nil
}
