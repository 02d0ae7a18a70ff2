package policy

import (
	"time"

	"github.com/dunglas/httpsfv"
)

// parseTargeted parses a targeted cache-control field such as
// CDN-Cache-Control (RFC 9213 §2.1): an sf-dictionary (RFC 9651 §3.2)
// whose members are cache directives. ok=false means the field is to be
// ignored as a whole, as if absent (Cache-Control then applies):
//
//   - it is absent or empty, or its lines do not parse as one
//     sf-dictionary (RFC 9213 §2.1 requires ignoring it then);
//   - a directive this package knows has a value of the wrong type: the
//     delta-seconds directives (max-age, s-maxage, stale-while-revalidate,
//     stale-if-error) need a non-negative Integer, so max-age="60",
//     max-age=1.5 and max-age=-1 spoil the field; no-store, public,
//     must-revalidate, proxy-revalidate, immutable, must-understand and
//     no-transform need Boolean true; no-cache and private need Boolean
//     true or a String (or Token) listing field names.
//
// RFC 9213 §2.1 says only that such values SHOULD NOT be consumed. Ignoring
// the one directive would leave a policy that is neither what the origin
// meant for CDNs nor what it said to every cache ("CDN-Cache-Control:
// no-store=1, max-age=600" would be cached for 600 s), so the whole field
// goes and the origin's Cache-Control, which it did write correctly,
// decides.
//
// Parameters are ignored; unknown directives (extensions such as "none",
// RFC 9213 §2.2) and request-only ones may have any type and only count as
// members. An Integer above 2^31 is clamped as delta-seconds are (RFC 9111
// §1.2.2). A duplicate key is the last one (RFC 9651 §3.2). A qualified
// no-cache or private whose list is malformed is taken as unqualified, the
// restrictive reading, as in Cache-Control.
func parseTargeted(lines []string) (Directives, bool) {
	d := NoDirectives()
	if len(lines) == 0 {
		return d, false
	}
	dict, err := httpsfv.UnmarshalDictionary(lines)
	if err != nil || len(dict.Names()) == 0 {
		return d, false
	}
	for _, name := range dict.Names() {
		m, _ := dict.Get(name)
		item, isItem := m.(httpsfv.Item)
		if !isItem {
			if knownTargeted(name) {
				return NoDirectives(), false // an Inner List
			}
			continue
		}
		var ok bool
		switch name {
		case "max-age":
			d.MaxAge, ok = sfDelta(item.Value)
		case "s-maxage":
			d.SMaxAge, ok = sfDelta(item.Value)
		case "stale-while-revalidate":
			d.StaleWhileRevalidate, ok = sfDelta(item.Value)
		case "stale-if-error":
			d.StaleIfError, ok = sfDelta(item.Value)
		case "no-store":
			d.NoStore, ok = sfTrue(item.Value)
		case "public":
			d.Public, ok = sfTrue(item.Value)
		case "must-revalidate":
			d.MustRevalidate, ok = sfTrue(item.Value)
		case "proxy-revalidate":
			d.ProxyRevalidate, ok = sfTrue(item.Value)
		case "immutable":
			d.Immutable, ok = sfTrue(item.Value)
		case "must-understand":
			d.MustUnderstand, ok = sfTrue(item.Value)
		case "no-transform":
			d.NoTransform, ok = sfTrue(item.Value)
		case "no-cache":
			d.NoCache, d.NoCacheFields, ok = sfFields(item.Value)
		case "private":
			d.Private, d.PrivateFields, ok = sfFields(item.Value)
		default:
			ok = true // an extension or a request directive: ignored
		}
		if !ok {
			return NoDirectives(), false
		}
	}
	d.NoCacheFields = sortFields(d.NoCacheFields)
	d.PrivateFields = sortFields(d.PrivateFields)
	return d, true
}

// knownTargeted reports the directives whose value type parseTargeted
// checks.
func knownTargeted(name string) bool {
	switch name {
	case "max-age", "s-maxage", "stale-while-revalidate", "stale-if-error",
		"no-store", "public", "must-revalidate", "proxy-revalidate", "immutable",
		"must-understand", "no-transform", "no-cache", "private":
		return true
	}
	return false
}

// sfDelta reads a delta-seconds directive: a non-negative Integer,
// clamped at maxDelta.
func sfDelta(v any) (time.Duration, bool) {
	n, ok := v.(int64)
	if !ok || n < 0 {
		return 0, false
	}
	if n > int64(maxDelta/time.Second) {
		return maxDelta, true
	}
	return time.Duration(n) * time.Second, true
}

// sfTrue reads a directive that has no argument: Boolean true.
func sfTrue(v any) (bool, bool) {
	b, ok := v.(bool)
	return true, ok && b
}

// sfFields reads no-cache or private: Boolean true (unqualified), or a
// String or Token listing field names (qualified; unqualified when the
// list is malformed or empty).
func sfFields(v any) (unqualified bool, fields []string, ok bool) {
	var list string
	switch v := v.(type) {
	case bool:
		return true, nil, v
	case string:
		list = v
	case httpsfv.Token:
		list = string(v)
	default:
		return false, nil, false
	}
	fields, valid := appendFields(nil, list, false)
	if !valid {
		return true, nil, true
	}
	return false, fields, true
}
