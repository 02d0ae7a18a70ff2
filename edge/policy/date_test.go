package policy

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseHTTPDate(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	utc := func(y int, m time.Month, d, hh, mm, ss int) time.Time {
		return time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
	}
	valid := []struct {
		in   string
		now  time.Time
		want time.Time
	}{
		{"Sun, 06 Nov 1994 08:49:37 GMT", now, utc(1994, 11, 6, 8, 49, 37)},
		{"Thu, 18 Aug 2050 02:01:18 GMT", now, utc(2050, 8, 18, 2, 1, 18)},
		{"Sat, 01 Jan 0000 00:00:00 GMT", now, utc(0, 1, 1, 0, 0, 0)},
		{"Fri, 31 Dec 9999 23:59:59 GMT", now, utc(9999, 12, 31, 23, 59, 59)},
		{"Thu, 29 Feb 2024 12:00:00 GMT", now, utc(2024, 2, 29, 12, 0, 0)},
		{"Sat, 31 Dec 2016 23:59:60 GMT", now, utc(2017, 1, 1, 0, 0, 0)}, // leap second
		{"Sun Nov  6 08:49:37 1994", now, utc(1994, 11, 6, 8, 49, 37)},
		{"Sun Nov 06 08:49:37 1994", now, utc(1994, 11, 6, 8, 49, 37)},
		{"Thu Aug 18 02:01:18 2050", now, utc(2050, 8, 18, 2, 1, 18)},
		{"Sunday, 06-Nov-94 08:49:37 GMT", now, utc(1994, 11, 6, 8, 49, 37)},
		{"Wednesday, 18-Aug-49 02:01:18 GMT", now, utc(2049, 8, 18, 2, 1, 18)},
		// Two-digit years: at most 50 years after now, else a century back.
		{"Wednesday, 18-Nov-76 00:00:00 GMT", now, utc(2076, 11, 18, 0, 0, 0)},
		{"Tuesday, 30-Nov-76 00:00:00 GMT", now, utc(1976, 11, 30, 0, 0, 0)},
		{"Thursday, 18-Aug-77 02:01:18 GMT", now, utc(1977, 8, 18, 2, 1, 18)},
		{"Saturday, 01-Jan-00 00:00:00 GMT", now, utc(2000, 1, 1, 0, 0, 0)},
		{"Friday, 01-Jan-00 00:00:00 GMT", utc(2080, 1, 1, 0, 0, 0), utc(2100, 1, 1, 0, 0, 0)},
	}
	for _, tt := range valid {
		got, ok := ParseHTTPDate(tt.in, tt.now)
		if !ok || !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("ParseHTTPDate(%q) = %v, %v; want %v", tt.in, got, ok, tt.want)
		}
	}
	invalid := []string{
		"", "0", "-1", "yesterday", "Thu, 18 Aug 2050 02:01:18",
		"Thu, 18  Aug  2050 02:01:18 GMT",   // double spaces
		"Thu, 18 Aug 2050 2:01:18 GMT",      // one-digit hour
		"Thu, 18 Aug 2050 02:1:18 GMT",      // one-digit minute
		"THU, 18 Aug 2050 02:01:18 GMT",     // case of the weekday
		"Thu, 18 AUG 2050 02:01:18 GMT",     // case of the month
		"Thu, 18 Aug 2050 02:01:18 gMT",     // case of the zone
		"Thu, 18 Aug 2050 02:01:18 UTC",     // zone
		"Thu, 18 Aug 2050 02:01:18 +0000",   // numeric zone
		"Thu, 18 Aug 50 02:01:18 GMT",       // two-digit year in an IMF-fixdate
		"Thu 18 Aug 2050 02:01:18 GMT",      // no comma
		"Thu, 18-Aug-2050 02:01:18 GMT",     // dashes
		"Thu, 18 Aug 2050 02.01.18 GMT",     // periods
		" Thu, 18 Aug 2050 02:01:18 GMT",    // leading space
		"Thu, 18 Aug 2050 02:01:18 GMT ",    // trailing space
		"Thu, 18 Aug 2050 02:01:18 GMT\x00", // trailing NUL
		"Thursday, 18 Aug 2050 02:01:18 GMT",
		"Wed, 18 Aug 2050 02:01:18 GMT", // wrong weekday
		"Fri, 30 Feb 2024 12:00:00 GMT", // no such day
		"Wed, 00 Jan 2025 12:00:00 GMT",
		"Thu, 18 Aug 2050 24:00:00 GMT",
		"Thu, 18 Aug 2050 23:60:00 GMT",
		"Thu, 18 Aug 2050 23:59:61 GMT",
		"Thu, 18 Aug +050 02:01:18 GMT",
		"Thu, +8 Aug 2050 02:01:18 GMT",
		"Thu, 1٨ Aug 2050 02:01:18 GMT",
		"Sun Nov 6 08:49:37 1994",    // asctime day needs SP DIGIT
		"Sun Nov  6 08:49:37 1994 ",  // trailing space
		"Sun Nov  6 08:49:37 94",     // asctime year is 4DIGIT
		"Sun Nov 6  08:49:37 1994",   // padding on the wrong side
		"Sun, Nov  6 08:49:37 1994",  // comma
		"Sun Nov  6 08:49:37 GMT 94", // not a format
		"Sunday, 06-Nov-1994 08:49:37 GMT",
		"Sunday, 06 Nov 94 08:49:37 GMT",
		"Sunday, 6-Nov-94 08:49:37 GMT",
		"sunday, 06-Nov-94 08:49:37 GMT",
		"Sun, 06-Nov-94 08:49:37 GMT",
		"Monday, 06-Nov-94 08:49:37 GMT", // wrong weekday
		"Sunday, 06-Nov-94 08:49:37 UTC",
		"Sunday,  06-Nov-94 08:49:37 GMT",
	}
	for _, in := range invalid {
		if got, ok := ParseHTTPDate(in, now); ok {
			t.Errorf("ParseHTTPDate(%q) = %v, accepted", in, got)
		}
	}
}

func TestParseHTTPDateAllocs(t *testing.T) {
	now := time.Now()
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "nope"} {
		if n := testing.AllocsPerRun(100, func() { ParseHTTPDate(s, now) }); n != 0 {
			t.Errorf("ParseHTTPDate(%q): %v allocs", s, n)
		}
	}
}

// The RFC 9110 §5.6.7 grammar, written independently of the parser.
const (
	reDay   = `(Mon|Tue|Wed|Thu|Fri|Sat|Sun)`
	reDayL  = `(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)`
	reMonth = `(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)`
	reTime  = `[0-9]{2}:[0-9]{2}:[0-9]{2}`
)

var (
	grammarIMF     = regexp.MustCompile(`^` + reDay + `, [0-9]{2} ` + reMonth + ` [0-9]{4} ` + reTime + ` GMT$`)
	grammarRFC850  = regexp.MustCompile(`^` + reDayL + `, [0-9]{2}-` + reMonth + `-[0-9]{2} ` + reTime + ` GMT$`)
	grammarASCTime = regexp.MustCompile(`^` + reDay + ` ` + reMonth + ` ([0-9]{2}| [0-9]) ` + reTime + ` [0-9]{4}$`)
)

func FuzzParseHTTPDate(f *testing.F) {
	for _, s := range []string{
		"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Thu, 18  Aug  2050 02:01:18 GMT", "Thu, 18 Aug 2050 2:01:18 GMT", "Sat, 31 Dec 2016 23:59:60 GMT",
		"Fri, 30 Feb 2024 12:00:00 GMT", "0", "",
	} {
		f.Add(s, int64(0))
	}
	f.Fuzz(checkParseHTTPDate)
}

// checkParseHTTPDate is FuzzParseHTTPDate's property check.
func checkParseHTTPDate(t *testing.T, s string, nowOffset int64) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).Add(time.Duration(nowOffset % int64(200*365*24*time.Hour)))
	got, ok := ParseHTTPDate(s, now)

	imf, rfc850, asctime := grammarIMF.MatchString(s), grammarRFC850.MatchString(s), grammarASCTime.MatchString(s)
	if !ok {
		// Completeness: a well-formed date that time.Parse reads
		// back to the same text must be accepted.
		if imf {
			if tp, err := time.Parse(http.TimeFormat, s); err == nil && tp.Format(http.TimeFormat) == s {
				t.Fatalf("rejected valid IMF-fixdate %q", s)
			}
		}
		if asctime && s[8] != '0' {
			if tp, err := time.Parse(time.ANSIC, s); err == nil && tp.Format(time.ANSIC) == s {
				t.Fatalf("rejected valid asctime-date %q", s)
			}
		}
		return
	}
	// Soundness: never accepts what the grammar rejects.
	if !imf && !rfc850 && !asctime {
		t.Fatalf("accepted %q, which the HTTP-date grammar rejects", s)
	}
	if got.Location() != time.UTC || got.Nanosecond() != 0 {
		t.Fatalf("ParseHTTPDate(%q) = %v: not whole seconds in UTC", s, got)
	}
	if strings.Contains(s, ":60 ") {
		return // a leap second reads as the next second: no round trip
	}
	// Round trip: the time formats back to the same text.
	var back string
	switch {
	case imf:
		back = got.Format(http.TimeFormat)
	case rfc850:
		back = strings.TrimSuffix(got.Format(time.RFC850), "UTC") + "GMT"
		if lim := now.AddDate(50, 0, 0); got.After(lim) || !got.After(lim.AddDate(-100, 0, 0)) {
			t.Fatalf("ParseHTTPDate(%q) = %v: not within the 100 years up to 50 years after %v", s, got, now)
		}
	case asctime:
		back = got.Format(time.ANSIC)
		if s[8] == '0' {
			back = back[:8] + "0" + back[9:]
		}
	}
	if back != s {
		t.Fatalf("ParseHTTPDate(%q) = %v, which formats as %q", s, got, back)
	}
}

func BenchmarkParseHTTPDate(b *testing.B) {
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		ParseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT", now)
	}
}
