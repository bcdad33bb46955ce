package detectors

import (
	"net/netip"
	"strings"
	"time"
)

// eventKind says which kind of failure a line reports.
type eventKind uint8

const (
	// kindFailed is "Failed <method> for <user> from <addr> port <n> ssh2".
	kindFailed eventKind = iota + 1
	// kindFailedInvalid is "Failed <method> for invalid user <user> from ...":
	// sshd logs it after "Invalid user" on the same connection.
	kindFailedInvalid
	// kindInvalidUser is "Invalid user <user> from <addr> port <n>".
	kindInvalidUser
)

// parseResult classifies one line for a parser.
type parseResult uint8

const (
	// resIgnored: not a line this parser is about (another program, or a
	// message that is not a failure).
	resIgnored parseResult = iota
	// resMatched: a failure with a readable source address.
	resMatched
	// resMalformed: a failure message whose address cannot be read.
	resMalformed
)

// event is what a parser extracts from one line. The timestamp is kept raw
// and only parsed for lines that matched, so that skipping stays cheap.
type event struct {
	addr  netip.Addr
	port  uint16 // 0 when the line has none
	kind  eventKind
	stamp string // raw syslog timestamp, "" when the line has none
}

// splitSyslog strips an optional "<PRI>" and the timestamp from a syslog
// line. It recognises the classic BSD stamp ("Nov 28 12:00:01") and the
// RFC 3339 stamp of rsyslog's high-precision format. When there is no stamp
// it returns the line as rest.
func splitSyslog(line string) (stamp, rest string) {
	if len(line) > 2 && line[0] == '<' {
		if i := strings.IndexByte(line[:min(len(line), 6)], '>'); i > 1 {
			line = line[i+1:]
		}
	}
	switch {
	case len(line) >= 16 && line[3] == ' ' && line[6] == ' ' && line[9] == ':' && line[12] == ':' && line[15] == ' ':
		return line[:15], line[16:]
	case len(line) >= 20 && isDigit(line[0]) && line[4] == '-' && line[10] == 'T':
		if i := strings.IndexByte(line, ' '); i >= 19 {
			return line[:i], line[i+1:]
		}
	}
	return "", line
}

// sshdMessage returns the message of a line logged by sshd (or by
// OpenSSH 9.8's sshd-session). rest is the line after its timestamp; when
// the line had a timestamp the host name comes first.
func sshdMessage(rest string, hasStamp bool) (string, bool) {
	if hasStamp {
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			return "", false
		}
		return sshdTag(rest[i+1:])
	}
	// No timestamp: the tag may come first ("sshd[1]: ...", as journald's
	// short output without a stamp) or after a host name.
	if msg, ok := sshdTag(rest); ok {
		return msg, true
	}
	if i := strings.IndexByte(rest, ' '); i >= 0 {
		return sshdTag(rest[i+1:])
	}
	return "", false
}

// sshdTag checks the "sshd[pid]: " or "sshd: " tag and returns the message.
func sshdTag(s string) (string, bool) {
	if !strings.HasPrefix(s, "sshd") {
		return "", false
	}
	s = s[4:]
	s = strings.TrimPrefix(s, "-session")
	if len(s) > 0 && s[0] == '[' {
		j := strings.IndexByte(s, ']')
		if j < 2 {
			return "", false
		}
		for k := 1; k < j; k++ {
			if !isDigit(s[k]) {
				return "", false
			}
		}
		s = s[j+1:]
	}
	if !strings.HasPrefix(s, ": ") {
		return "", false
	}
	return s[2:], true
}

// parseSSH recognises OpenSSH authentication failures in a syslog line.
func parseSSH(line string) (event, parseResult) {
	line = strings.TrimSuffix(line, "\r")
	stamp, rest := splitSyslog(line)
	msg, ok := sshdMessage(rest, stamp != "")
	if !ok {
		return event{}, resIgnored
	}
	var ev event
	switch {
	case strings.HasPrefix(msg, "Failed "):
		// "Failed <method> for [invalid user ]<user> from ..."
		m := msg[len("Failed "):]
		sp := strings.IndexByte(m, ' ')
		if sp <= 0 || !strings.HasPrefix(m[sp:], " for ") {
			return event{}, resIgnored
		}
		ev.kind = kindFailed
		if strings.HasPrefix(m[sp+len(" for "):], "invalid user ") {
			ev.kind = kindFailedInvalid
		}
	case strings.HasPrefix(msg, "Invalid user "):
		ev.kind = kindInvalidUser
	default:
		return event{}, resIgnored
	}
	// The user name is the attacker's to choose and may itself contain
	// " from <addr> port <n>"; sshd writes the real address after it, so
	// the last " from " is the one to trust.
	i := strings.LastIndex(msg, " from ")
	if i < 0 {
		return event{}, resMalformed
	}
	tail := msg[i+len(" from "):]
	end := strings.IndexByte(tail, ' ')
	if end < 0 {
		end = len(tail)
	}
	addr, err := netip.ParseAddr(tail[:end])
	if err != nil {
		return event{}, resMalformed
	}
	ev.addr = addr.WithZone("").Unmap()
	tail = tail[end:]
	if tail != "" {
		// " port <n>", then optionally " ssh2" and " [preauth]".
		if !strings.HasPrefix(tail, " port ") {
			return event{}, resMalformed
		}
		p, ok := parsePort(tail[len(" port "):])
		if !ok {
			return event{}, resMalformed
		}
		ev.port = p
	}
	ev.stamp = stamp
	return ev, resMatched
}

// parsePort reads the decimal port at the start of s, which must end
// there or at a space.
func parsePort(s string) (uint16, bool) {
	n, i := 0, 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		n = n*10 + int(s[i]-'0')
		if n > 65535 {
			return 0, false
		}
	}
	if i == 0 || (i < len(s) && s[i] != ' ') {
		return 0, false
	}
	return uint16(n), true
}

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

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
