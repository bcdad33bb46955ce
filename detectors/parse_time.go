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
