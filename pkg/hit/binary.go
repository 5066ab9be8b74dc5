package hit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
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
// A string is its length (uvarint) and its bytes; an integer a zigzag
// varint; a time its Unix seconds (varint) and nanoseconds (uvarint), in
// UTC. A later version adds fields by taking the next version byte.
const binaryV1 = 0xB1

const (
	flagHasValue = 1 << iota
	flagBot
	flagCookieless
)

// appendBinary appends h's version-1 encoding to b.
func appendBinary(b []byte, h *Hit) []byte {
	b = append(b, binaryV1)
	for _, s := range [...]string{h.ID, h.TenantID, h.PropertyID, h.TrackingID, h.ClientID, h.UserID, string(h.Type), string(h.Origin)} {
		b = appendString(b, s)
	}
	b = appendTime(b, h.Time)
	b = appendTime(b, h.ReceivedAt)
	for _, s := range [...]string{h.URL, h.Hostname, h.Path, h.Title, h.Referrer, h.Category, h.Action, h.Label} {
		b = appendString(b, s)
	}
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(h.Value))
	b = binary.AppendUvarint(b, uint64(len(h.Params)))
	if len(h.Params) > 0 {
		keys := make([]string, 0, len(h.Params))
		for k := range h.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = appendString(b, k)
			b = appendString(b, h.Params[k])
		}
	}
	b = binary.AppendVarint(b, h.EngagementMS)
	for _, s := range [...]string{h.ScreenResolution, h.Language, h.UserAgent, h.Browser, h.OS, h.DeviceCategory, h.Country, h.IP, h.BotName, h.IPExcludedBy} {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, int64(h.RuleVersion))
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

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// decoder reads a version-1 encoding; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) time() time.Time {
	sec, nsec := d.varint(), d.uvarint()
	if d.err == nil && nsec >= 1e9 {
		d.err = fmt.Errorf("nanoseconds %d out of range", nsec)
	}
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) fixed64() uint64 {
	if d.err == nil && len(d.b) < 8 {
		d.err = errTruncated
	}
	if d.err != nil {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) byte() byte {
	if d.err == nil && len(d.b) < 1 {
		d.err = errTruncated
	}
	if d.err != nil {
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// decodeBinary decodes a version-1 encoding (b without its version byte).
func decodeBinary(b []byte) (*Hit, error) {
	d := decoder{b: b}
	h := &Hit{}
	for _, s := range [...]*string{&h.ID, &h.TenantID, &h.PropertyID, &h.TrackingID, &h.ClientID, &h.UserID} {
		*s = d.string()
	}
	h.Type, h.Origin = Type(d.string()), Origin(d.string())
	h.Time, h.ReceivedAt = d.time(), d.time()
	for _, s := range [...]*string{&h.URL, &h.Hostname, &h.Path, &h.Title, &h.Referrer, &h.Category, &h.Action, &h.Label} {
		*s = d.string()
	}
	h.Value = math.Float64frombits(d.fixed64())
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) { // each pair takes at least two bytes
		d.err = errTruncated
	}
	if n > 0 && d.err == nil {
		h.Params = make(map[string]string, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.string()
			h.Params[k] = d.string()
		}
	}
	h.EngagementMS = d.varint()
	for _, s := range [...]*string{&h.ScreenResolution, &h.Language, &h.UserAgent, &h.Browser, &h.OS, &h.DeviceCategory, &h.Country, &h.IP, &h.BotName, &h.IPExcludedBy} {
		*s = d.string()
	}
	rv := d.varint()
	if d.err == nil && (rv < math.MinInt32 || rv > math.MaxInt32) {
		d.err = fmt.Errorf("rule version %d out of range", rv)
	}
	h.RuleVersion = int(rv)
	flags := d.byte()
	h.HasValue, h.Bot, h.Cookieless = flags&flagHasValue != 0, flags&flagBot != 0, flags&flagCookieless != 0
	switch {
	case d.err != nil:
		return nil, d.err
	case len(d.b) > 0:
		return nil, fmt.Errorf("%d bytes after the last field", len(d.b))
	case flags&^(flagHasValue|flagBot|flagCookieless) != 0:
		return nil, fmt.Errorf("unknown flags %#x", flags)
	}
	return h, nil
}
