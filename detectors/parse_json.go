package detectors

// JSON logs, one object per line: Traefik and Caddy access logs,
// Kubernetes API audit events and AWS CloudTrail records.

import "strings"

// jsonMaxDepth bounds the nesting a JSON line may have; deeper lines are
// malformed.
const jsonMaxDepth = 32

// jsonFields are the values of a JSON line the families read, raw (a
// string's escapes are kept). Each is the first found at its path.
type jsonFields struct {
	// Traefik
	clientHost, clientAddr, downstreamStatus, requestMethod, requestPath, traefikAgent, time string
	// Caddy
	logger, ts, remoteIP, clientIP, method, uri, caddyAgent, status, userID string
	// Kubernetes audit
	kind, apiVersion, stage, sourceIP, verb, requestURI, code, username, userAgent, received string
	// CloudTrail
	eventSource, eventName, sourceIPAddress, consoleLogin, eventTime, userName string
}

// set records v, found at path keys[:n].
func (f *jsonFields) set(keys *[jsonMaxDepth]string, n int, v string) {
	first := func(dst *string) {
		if *dst == "" {
			*dst = v
		}
	}
	switch n {
	case 1:
		switch keys[0] {
		case "ClientHost":
			first(&f.clientHost)
		case "ClientAddr":
			first(&f.clientAddr)
		case "DownstreamStatus":
			first(&f.downstreamStatus)
		case "RequestMethod":
			first(&f.requestMethod)
		case "RequestPath":
			first(&f.requestPath)
		case "request_User-Agent":
			first(&f.traefikAgent)
		case "time":
			first(&f.time)
		case "logger":
			first(&f.logger)
		case "ts":
			first(&f.ts)
		case "status":
			first(&f.status)
		case "user_id":
			first(&f.userID)
		case "kind":
			first(&f.kind)
		case "apiVersion":
			first(&f.apiVersion)
		case "stage":
			first(&f.stage)
		case "sourceIPs":
			first(&f.sourceIP)
		case "verb":
			first(&f.verb)
		case "requestURI":
			first(&f.requestURI)
		case "userAgent":
			first(&f.userAgent)
		case "requestReceivedTimestamp":
			first(&f.received)
		case "eventSource":
			first(&f.eventSource)
		case "eventName":
			first(&f.eventName)
		case "sourceIPAddress":
			first(&f.sourceIPAddress)
		case "eventTime":
			first(&f.eventTime)
		}
	case 2:
		switch {
		case keys[0] == "request" && keys[1] == "remote_ip":
			first(&f.remoteIP)
		case keys[0] == "request" && keys[1] == "client_ip":
			first(&f.clientIP)
		case keys[0] == "request" && keys[1] == "method":
			first(&f.method)
		case keys[0] == "request" && keys[1] == "uri":
			first(&f.uri)
		case keys[0] == "responseStatus" && keys[1] == "code":
			first(&f.code)
		case keys[0] == "user" && keys[1] == "username":
			first(&f.username)
		case keys[0] == "responseElements" && keys[1] == "ConsoleLogin":
			first(&f.consoleLogin)
		case keys[0] == "userIdentity" && keys[1] == "userName":
			first(&f.userName)
		}
	case 3:
		if keys[0] == "request" && keys[1] == "headers" && keys[2] == "User-Agent" {
			first(&f.caddyAgent)
		}
	}
}

// jsonScanner walks one JSON value without decoding it into Go values.
type jsonScanner struct {
	s    string
	i    int
	keys [jsonMaxDepth]string
	f    jsonFields
}

func (sc *jsonScanner) ws() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// str reads a string at sc.i (its opening quote) and returns its raw
// contents.
func (sc *jsonScanner) str() (string, bool) {
	start := sc.i + 1
	for j := start; j < len(sc.s); j++ {
		switch c := sc.s[j]; {
		case c == '\\':
			j++
		case c == '"':
			sc.i = j + 1
			return sc.s[start:j], true
		case c < 0x20:
			return "", false
		}
	}
	return "", false
}

// value reads one value at path keys[:n], depth containers deep.
func (sc *jsonScanner) value(n, depth int) bool {
	sc.ws()
	if sc.i >= len(sc.s) || depth > jsonMaxDepth {
		return false
	}
	switch c := sc.s[sc.i]; c {
	case '{':
		sc.i++
		sc.ws()
		if sc.i < len(sc.s) && sc.s[sc.i] == '}' {
			sc.i++
			return true
		}
		for {
			sc.ws()
			if sc.i >= len(sc.s) || sc.s[sc.i] != '"' {
				return false
			}
			k, ok := sc.str()
			if !ok {
				return false
			}
			sc.ws()
			if sc.i >= len(sc.s) || sc.s[sc.i] != ':' {
				return false
			}
			sc.i++
			if n < jsonMaxDepth {
				sc.keys[n] = k
			}
			if !sc.value(n+1, depth+1) {
				return false
			}
			sc.ws()
			if sc.i >= len(sc.s) {
				return false
			}
			if sc.s[sc.i] == '}' {
				sc.i++
				return true
			}
			if sc.s[sc.i] != ',' {
				return false
			}
			sc.i++
		}
	case '[':
		sc.i++
		sc.ws()
		if sc.i < len(sc.s) && sc.s[sc.i] == ']' {
			sc.i++
			return true
		}
		for {
			// elements are at the array's path
			if !sc.value(n, depth+1) {
				return false
			}
			sc.ws()
			if sc.i >= len(sc.s) {
				return false
			}
			if sc.s[sc.i] == ']' {
				sc.i++
				return true
			}
			if sc.s[sc.i] != ',' {
				return false
			}
			sc.i++
		}
	case '"':
		v, ok := sc.str()
		if !ok {
			return false
		}
		if n <= jsonMaxDepth {
			sc.f.set(&sc.keys, n, v)
		}
		return true
	default:
		if !(isDigit(c) || c == '-' || c == 't' || c == 'f' || c == 'n') {
			return false
		}
		start := sc.i
		for sc.i < len(sc.s) {
			d := sc.s[sc.i]
			if d == ',' || d == '}' || d == ']' || d == ' ' || d == '\t' || d == '\n' || d == '\r' {
				break
			}
			if !(isDigit(d) || d >= 'a' && d <= 'z' || d == '.' || d == '-' || d == '+' || d == 'E') {
				return false
			}
			sc.i++
		}
		v := sc.s[start:sc.i]
		if n <= jsonMaxDepth {
			sc.f.set(&sc.keys, n, v)
		}
		return true
	}
}

// parseJSON reads a JSON line of one of the families. A line that is not
// well-formed JSON is malformed when what could be read names a family,
// ignored otherwise.
func parseJSON(line string, ev *Event) parseResult {
	sc := jsonScanner{s: line}
	ok := sc.value(0, 0)
	f := &sc.f
	if ok {
		sc.ws()
		ok = sc.i == len(line)
	}
	res := resIgnored
	switch {
	case strings.HasPrefix(f.apiVersion, "audit.k8s.io/") && f.kind == "Event":
		res = k8sAudit(f, ev)
	case f.eventSource != "" && f.eventName != "":
		res = cloudTrail(f, ev)
	case f.clientHost != "" || f.clientAddr != "" || f.downstreamStatus != "":
		res = traefikAccess(f, ev)
	case strings.HasPrefix(f.logger, "http.log.access"):
		res = caddyAccess(f, ev)
	}
	if !ok && (res != resIgnored || f.apiVersion != "" || f.eventSource != "" || f.clientHost != "" || f.logger != "") {
		return resMalformed
	}
	return res
}

// jsonStatus reads an HTTP status code written as a JSON number.
func jsonStatus(s string) (int, bool) {
	if len(s) != 3 || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[2]) {
		return 0, false
	}
	return int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0'), true
}

// httpTarget splits a request target into its path and query string.
func httpTarget(s string) (path, query string) {
	if q := strings.IndexByte(s, '?'); q >= 0 {
		return s[:q], s[q+1:]
	}
	return s, ""
}

// traefikAccess reads Traefik's JSON access log: ClientHost (or
// ClientAddr, "<addr>:<port>"), DownstreamStatus, RequestMethod,
// RequestPath, request_User-Agent (when headers are kept), time.
func traefikAccess(f *jsonFields, ev *Event) parseResult {
	ev.Kind, ev.Program = KindHTTPRequest, "traefik"
	h := f.clientHost
	if h == "" {
		if c := strings.LastIndexByte(f.clientAddr, ':'); c > 0 {
			h = strings.TrimSuffix(strings.TrimPrefix(f.clientAddr[:c], "["), "]")
		}
	}
	st, ok := jsonStatus(f.downstreamStatus)
	if !ok || !readAddr(h, &ev.Src) {
		return resMalformed
	}
	ev.Path, ev.Query = httpTarget(f.requestPath)
	ev.Status, ev.Method, ev.Agent = st, f.requestMethod, f.traefikAgent
	ev.Stamp = f.time
	return resMatched
}

// caddyAccess reads Caddy's JSON access log: request.client_ip (or
// remote_ip), request.method, request.uri, request.headers.User-Agent,
// status, user_id, ts (seconds, or an RFC 3339 string).
func caddyAccess(f *jsonFields, ev *Event) parseResult {
	ev.Kind, ev.Program = KindHTTPRequest, "caddy"
	a := f.clientIP
	if a == "" {
		a = f.remoteIP
	}
	st, ok := jsonStatus(f.status)
	if !ok || !readAddr(a, &ev.Src) {
		return resMalformed
	}
	ev.Path, ev.Query = httpTarget(f.uri)
	ev.Status, ev.Method, ev.Agent, ev.User = st, f.method, f.caddyAgent, f.userID
	ev.Stamp = f.ts
	if f.ts != "" && isDigit(f.ts[0]) && !strings.ContainsRune(f.ts, '-') {
		ev.stampKind = stampUnix
	}
	return resMatched
}

// k8sAudit reads a Kubernetes API audit event: a request refused with
// 401 or 403 at stage ResponseComplete (or Panic) is KindK8sDenied,
// attributed to its first sourceIPs entry. Other events are ignored.
func k8sAudit(f *jsonFields, ev *Event) parseResult {
	if f.stage != "" && f.stage != "ResponseComplete" && f.stage != "Panic" {
		return resIgnored
	}
	if f.code != "401" && f.code != "403" {
		return resIgnored
	}
	ev.Kind, ev.Program = KindK8sDenied, "kube-apiserver"
	st, _ := jsonStatus(f.code)
	ev.Path, ev.Query = httpTarget(f.requestURI)
	ev.Status, ev.Method, ev.User, ev.Agent = st, f.verb, f.username, f.userAgent
	ev.Stamp = f.received
	if !readAddr(f.sourceIP, &ev.Src) {
		return resMalformed
	}
	return resMatched
}

// cloudTrail reads an AWS CloudTrail record (one per line, as CloudWatch
// Logs or `jq -c '.Records[]'` write them): a ConsoleLogin whose
// responseElements.ConsoleLogin is "Failure" is KindCloudLoginFailure,
// attributed to sourceIPAddress. A source that is an AWS service name,
// not an address, is local. Other records are ignored.
func cloudTrail(f *jsonFields, ev *Event) parseResult {
	if f.eventName != "ConsoleLogin" || f.consoleLogin != "Failure" {
		return resIgnored
	}
	ev.Kind, ev.Program, ev.Method = KindCloudLoginFailure, "cloudtrail", f.eventName
	ev.User, ev.Stamp = f.userName, f.eventTime
	if !tryAddr(f.sourceIPAddress, &ev.Src) { // or a service: "AWS Internal"
		if f.sourceIPAddress == "" {
			return resMalformed
		}
		return resLocal
	}
	return resMatched
}
