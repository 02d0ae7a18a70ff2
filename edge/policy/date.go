package policy

import "time"

// ParseHTTPDate parses an HTTP-date (RFC 9110 §5.6.7) strictly: the
// IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT" exactly, or one of the two
// obsolete forms a recipient must also accept, exactly: the rfc850-date
// "Sunday, 06-Nov-94 08:49:37 GMT" and the asctime-date
// "Sun Nov  6 08:49:37 1994". Names are case-sensitive, every separator is
// one SP (asctime's day of month is 2DIGIT or SP DIGIT), the zone is "GMT",
// the date must exist (no 31 Apr) and the day name must be its weekday.
// Anything else, surrounding whitespace included, gives ok=false: callers
// decide what an invalid date means (RFC 9111 §5.3: an invalid Expires is
// in the past). A second of 60 (a leap second) is accepted and read as the
// next second.
//
// now only resolves the two-digit year of an rfc850-date: a year that
// would lie more than 50 years after now is taken from the previous
// century (RFC 9110 §5.6.7). ParseHTTPDate does not allocate.
func ParseHTTPDate(s string, now time.Time) (t time.Time, ok bool) {
	switch {
	case len(s) == len("Sun, 06 Nov 1994 08:49:37 GMT") && s[3] == ',':
		return parseIMFFixdate(s)
	case len(s) == len("Sun Nov  6 08:49:37 1994"):
		return parseASCTime(s)
	}
	return parseRFC850(s, now)
}

// parseIMFFixdate parses day-name "," SP day SP month SP year SP
// time-of-day SP "GMT".
func parseIMFFixdate(s string) (time.Time, bool) {
	wd, ok1 := shortDay(s[0:3])
	day, ok2 := digits(s[5:7])
	month, ok3 := monthName(s[8:11])
	year, ok4 := digits(s[12:16])
	hh, mm, ss, ok5 := clock(s[17:25])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) ||
		s[3:5] != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[25:] != " GMT" {
		return time.Time{}, false
	}
	return checked(year, month, day, hh, mm, ss, wd)
}

// parseASCTime parses day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP
// time-of-day SP year.
func parseASCTime(s string) (time.Time, bool) {
	wd, ok1 := shortDay(s[0:3])
	month, ok2 := monthName(s[4:7])
	dd := s[8:10]
	if dd[0] == ' ' {
		dd = dd[1:]
	}
	day, ok3 := digits(dd)
	hh, mm, ss, ok4 := clock(s[11:19])
	year, ok5 := digits(s[20:24])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	return checked(year, month, day, hh, mm, ss, wd)
}

// parseRFC850 parses day-name-l "," SP day "-" month "-" 2DIGIT SP
// time-of-day SP "GMT".
func parseRFC850(s string, now time.Time) (time.Time, bool) {
	n := len(s) - len(", 06-Nov-94 08:49:37 GMT") // the day name's length
	if n < len("Monday") || n > len("Wednesday") {
		return time.Time{}, false
	}
	wd, ok1 := longDay(s[:n])
	r := s[n:]
	day, ok2 := digits(r[2:4])
	month, ok3 := monthName(r[5:8])
	yy, ok4 := digits(r[9:11])
	hh, mm, ss, ok5 := clock(r[12:20])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) || r[:2] != ", " || r[4] != '-' || r[8] != '-' || r[11] != ' ' || r[20:] != " GMT" {
		return time.Time{}, false
	}
	// The latest year ending in yy at most 50 years after now's year, or
	// the one a century before if the timestamp itself would be more than
	// 50 years after now.
	limit := now.Year() + 50
	year := limit - ((limit-yy)%100+100)%100
	if time.Date(year, month, day, hh, mm, min(ss, 59), 0, time.UTC).After(now.AddDate(50, 0, 0)) {
		year -= 100
	}
	return checked(year, month, day, hh, mm, ss, wd)
}

// clock parses time-of-day: hour ":" minute ":" second, each 2DIGIT, with
// hour ≤ 23, minute ≤ 59 and second ≤ 60 (a leap second).
func clock(s string) (hh, mm, ss int, ok bool) {
	hh, ok1 := digits(s[0:2])
	mm, ok2 := digits(s[3:5])
	ss, ok3 := digits(s[6:8])
	ok = ok1 && ok2 && ok3 && s[2] == ':' && s[5] == ':' && hh <= 23 && mm <= 59 && ss <= 60
	return hh, mm, ss, ok
}

// checked makes a UTC time of a parsed date, if the day exists in its
// month and wd is its weekday. A leap second becomes the next second.
func checked(year int, month time.Month, day, hh, mm, ss int, wd time.Weekday) (time.Time, bool) {
	t := time.Date(year, month, day, hh, mm, min(ss, 59), 0, time.UTC)
	if t.Day() != day || t.Month() != month || t.Weekday() != wd {
		return time.Time{}, false
	}
	if ss == 60 {
		t = t.Add(time.Second)
	}
	return t, true
}

// digits parses a run of ASCII digits (no sign, not empty).
func digits(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// monthName returns the month of a case-sensitive three-letter name.
func monthName(s string) (time.Month, bool) {
	for m := time.January; m <= time.December; m++ {
		if s == m.String()[:3] {
			return m, true
		}
	}
	return 0, false
}

// shortDay returns the weekday of a case-sensitive three-letter day-name.
func shortDay(s string) (time.Weekday, bool) {
	for d := time.Sunday; d <= time.Saturday; d++ {
		if s == d.String()[:3] {
			return d, true
		}
	}
	return 0, false
}

// longDay returns the weekday of a case-sensitive day-name-l ("Monday").
func longDay(s string) (time.Weekday, bool) {
	for d := time.Sunday; d <= time.Saturday; d++ {
		if s == d.String() {
			return d, true
		}
	}
	return 0, false
}
