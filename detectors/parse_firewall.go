package detectors

// Kernel firewall LOG lines (netfilter).

import "strings"

// parseFirewall reads a kernel firewall log line: "[ 12.34] <prefix> IN=..
// OUT=.. SRC=<addr> DST=<addr> ... PROTO=TCP SPT=<n> DPT=<n> ...".
func parseFirewall(msg string, ev *Event) parseResult {
	in := strings.Index(msg, "IN=")
	if in < 0 || (in > 0 && msg[in-1] != ' ') {
		return resIgnored
	}
	tag := msg[:in]
	if len(tag) > 0 && tag[0] == '[' { // the kernel's uptime stamp
		if j := strings.IndexByte(tag, ']'); j >= 0 {
			tag = tag[j+1:]
		}
	}
	ev.Kind = KindFirewall
	ev.Tag = strings.TrimSpace(tag)
	rest := msg[in:]
	src, ok := kv(rest, " SRC=")
	if !ok || !readAddr(src, &ev.Src) {
		return resMalformed
	}
	if dst, ok := kv(rest, " DST="); ok && !readAddr(dst, &ev.Dst) {
		return resMalformed
	}
	ev.Proto, _ = kv(rest, " PROTO=")
	if s, ok := kv(rest, " SPT="); ok {
		if ev.Port, ok = parsePort(s); !ok {
			return resMalformed
		}
	}
	if s, ok := kv(rest, " DPT="); ok {
		if ev.DstPort, ok = parsePort(s); !ok {
			return resMalformed
		}
	}
	return resMatched
}

// kv returns the value after key (" KEY=") up to the next space.
func kv(s, key string) (string, bool) {
	i := strings.Index(s, key)
	if i < 0 {
		return "", false
	}
	v := s[i+len(key):]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v, true
}
