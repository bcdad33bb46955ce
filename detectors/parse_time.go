package detectors

// Timestamps: classic syslog stamps, RFC 3339, and the web log stamp.

import "time"

// parseStamp turns a raw syslog timestamp into a time. A classic stamp
// has no year and no zone: it is read in now's location, in now's year,
// or in the previous year if that would put it more than a day ahead of
// now (a December line read in January), or in the next year if that
// still puts it less than a day ahead (a January line read on New Year's
// Eve).
func parseStamp(stamp string, now time.Time) (time.Time, bool) {
	if stamp == "" {
		return time.Time{}, false
	}
	if len(stamp) != 15 || stamp[3] != ' ' { // RFC 3339
		t, err := time.Parse(time.RFC3339Nano, stamp)
		return t, err == nil
	}
	mon := month(stamp[:3])
	if mon == 0 {
		return time.Time{}, false
	}
	day, ok1 := twoDigits(stamp[4], stamp[5])
	h, ok2 := twoDigits(stamp[7], stamp[8])
	m, ok3 := twoDigits(stamp[10], stamp[11])
	s, ok4 := twoDigits(stamp[13], stamp[14])
	if !ok1 || !ok2 || !ok3 || !ok4 || day < 1 || day > 31 || h > 23 || m > 59 || s > 60 {
		return time.Time{}, false
	}
	loc := now.Location()
	year := now.In(loc).Year()
	t := time.Date(year, mon, day, h, m, s, 0, loc)
	ahead := now.Add(24 * time.Hour)
	if t.After(ahead) {
		t = time.Date(year-1, mon, day, h, m, s, 0, loc)
	} else if next := time.Date(year+1, mon, day, h, m, s, 0, loc); !next.After(ahead) {
		t = next // a January line from a sender whose clock is ahead of ours at New Year
	}
	if t.Day() != day { // e.g. Feb 30, normalised by time.Date
		return time.Time{}, false
	}
	return t, true
}

// twoDigits reads a two-digit number; the first may be a space ("_2").
func twoDigits(a, b byte) (int, bool) {
	if !isDigit(b) {
		return 0, false
	}
	switch {
	case a == ' ':
		return int(b - '0'), true
	case isDigit(a):
		return int(a-'0')*10 + int(b-'0'), true
	}
	return 0, false
}

func month(s string) time.Month {
	switch s {
	case "Jan":
		return time.January
	case "Feb":
		return time.February
	case "Mar":
		return time.March
	case "Apr":
		return time.April
	case "May":
		return time.May
	case "Jun":
		return time.June
	case "Jul":
		return time.July
	case "Aug":
		return time.August
	case "Sep":
		return time.September
	case "Oct":
		return time.October
	case "Nov":
		return time.November
	case "Dec":
		return time.December
	}
	return 0
}

// parseStampKind reads a stamp written as kind says. Stamps without a
// zone (stampDate, stampCtime) are read in now's location.
func parseStampKind(kind stampKind, s string, now time.Time) (time.Time, bool) {
	switch kind {
	case stampWeb:
		return parseWebStamp(s)
	case stampDate:
		return parseDateStamp(s, now.Location())
	case stampCtime:
		return parseCtimeStamp(s, now.Location())
	case stampUnix:
		return parseUnixStamp(s)
	}
	return parseStamp(s, now)
}

// parseDateStamp reads "2024-11-28 12:00:01", "2024/11/28 12:00:01" or
// "2024-11-28T12:00:01", with an optional fraction of a second.
func parseDateStamp(s string, loc *time.Location) (time.Time, bool) {
	if len(s) < 19 || (s[4] != '-' && s[4] != '/') || s[7] != s[4] || (s[10] != ' ' && s[10] != 'T') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	y1, ok1 := twoDigits(s[0], s[1])
	y2, ok2 := twoDigits(s[2], s[3])
	mon, ok3 := twoDigits(s[5], s[6])
	day, ok4 := twoDigits(s[8], s[9])
	h, ok5 := twoDigits(s[11], s[12])
	m, ok6 := twoDigits(s[14], s[15])
	sec, ok7 := twoDigits(s[17], s[18])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 || s[0] == ' ' || s[5] == ' ' || s[8] == ' ' || s[11] == ' ' {
		return time.Time{}, false
	}
	ns, ok := fraction(s[19:])
	if !ok {
		return time.Time{}, false
	}
	return dateOK(y1*100+y2, mon, day, h, m, sec, ns, loc)
}

// parseCtimeStamp reads "Sat Nov 28 12:00:01 2024" or
// "Sat Nov 28 12:00:01.123456 2024" (Apache's error log, vsftpd).
func parseCtimeStamp(s string, loc *time.Location) (time.Time, bool) {
	if len(s) < 24 || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	mon := month(s[4:7])
	day, ok1 := twoDigits(s[8], s[9])
	h, ok2 := twoDigits(s[11], s[12])
	m, ok3 := twoDigits(s[14], s[15])
	sec, ok4 := twoDigits(s[17], s[18])
	rest := s[19:]
	sp := len(rest) - 5
	if sp < 0 || rest[sp] != ' ' {
		return time.Time{}, false
	}
	ns, ok5 := fraction(rest[:sp])
	y1, ok6 := twoDigits(rest[sp+1], rest[sp+2])
	y2, ok7 := twoDigits(rest[sp+3], rest[sp+4])
	if mon == 0 || !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 || rest[sp+1] == ' ' {
		return time.Time{}, false
	}
	return dateOK(y1*100+y2, int(mon), day, h, m, sec, ns, loc)
}

// parseUnixStamp reads seconds since the epoch with an optional fraction
// ("1732795201.123").
func parseUnixStamp(s string) (time.Time, bool) {
	var sec int64
	i := 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		if i >= 12 {
			return time.Time{}, false
		}
		sec = sec*10 + int64(s[i]-'0')
	}
	if i == 0 {
		return time.Time{}, false
	}
	ns, ok := fraction(s[i:])
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(sec, int64(ns)).UTC(), true
}

// fraction reads "" or ".ddd" (up to nanoseconds; further digits are
// dropped) and returns nanoseconds.
func fraction(s string) (int, bool) {
	if s == "" {
		return 0, true
	}
	if s[0] != '.' && s[0] != ',' || len(s) < 2 || len(s) > 16 {
		return 0, false
	}
	ns, scale := 0, 100000000
	for i := 1; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		ns += int(s[i]-'0') * scale
		scale /= 10
	}
	return ns, true
}

func dateOK(y, mon, day, h, m, sec, ns int, loc *time.Location) (time.Time, bool) {
	if mon < 1 || mon > 12 || day < 1 || day > 31 || h > 23 || m > 59 || sec > 60 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mon), day, h, m, sec, ns, loc)
	if t.Day() != day {
		return time.Time{}, false
	}
	return t, true
}
