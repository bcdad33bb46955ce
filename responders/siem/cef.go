package siem

import (
	"strconv"
	"strings"

	"github.com/meshward/meshward/intel"
)

// CEF header constants.
const (
	cefVendor  = "Meshward"
	cefProduct = "meshward"
)

// cefSeverity maps a severity to CEF's 0..10 scale.
func cefSeverity(e Event) int {
	switch e.Severity {
	case intel.SeverityCritical:
		return 10
	case intel.SeverityHigh:
		return 8
	case intel.SeverityMedium:
		return 5
	case intel.SeverityLow:
		return 3
	}
	if e.Kind == KindPolicyEnforced || e.Kind == KindPolicyCommitted {
		return 5
	}
	return 3
}

var cefNames = map[Kind]string{
	KindDetection:       "Attack detected",
	KindSighting:        "Sighting received",
	KindPolicyCommitted: "Policy committed",
	KindPolicyEnforced:  "Policy enforced",
	KindPolicyExpired:   "Policy expired",
	KindAlert:           "Alert",
}

// cefName is the header's name of e.
func cefName(e Event) string {
	if e.Kind == KindAlert && e.Alert != nil {
		return "Alert " + e.Alert.State + ": " + e.Alert.Rule
	}
	return cefNames[e.Kind]
}

// FormatCEF renders e as one CEF:0 record. version is the device version.
//
// Extension keys: rt (milliseconds since the epoch), externalId (event
// ID), dvchost (node), src (IPv4 indicator) or c6a2 (IPv6 indicator),
// dhost (domain indicator), cs1 indicator ("type:value"), cs2 detector,
// cs3 ATT&CK technique, cs4 policy ID, cs5 backend, cs6 origin node,
// cn1 confidence, cnt event count, act action, suser author, msg reason,
// end expiry (milliseconds since the epoch). Alerts add cat (the rule),
// outcome (firing or resolved), flexString1 the group, flexString2 the
// alert's ID, start (firing since, milliseconds since the epoch) and cn2
// the reminder's number; msg is the alert's detail.
func FormatCEF(e Event, version string) string {
	var b strings.Builder
	b.WriteString("CEF:0|")
	for _, h := range []string{cefVendor, cefProduct, version, string(e.Kind), cefName(e)} {
		b.WriteString(escapeHeader(h))
		b.WriteByte('|')
	}
	b.WriteString(strconv.Itoa(cefSeverity(e)))
	b.WriteByte('|')
	first := true
	ext := func(k, v string) {
		if v == "" {
			return
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(escapeExt(v))
	}
	ext("rt", strconv.FormatInt(e.Time.UnixMilli(), 10))
	ext("externalId", e.ID)
	ext("dvchost", e.Node)
	switch e.Indicator.Type {
	case intel.IPv4:
		ext("src", e.Indicator.Value)
	case intel.IPv6:
		ext("c6a2", e.Indicator.Value)
		ext("c6a2Label", "Source IPv6 Address")
	case intel.Domain:
		ext("dhost", e.Indicator.Value)
	}
	if e.Indicator.Value != "" {
		ext("cs1", e.Indicator.Key())
		ext("cs1Label", "indicator")
	}
	if e.Detector != "" {
		ext("cs2", e.Detector)
		ext("cs2Label", "detector")
	}
	if e.Technique != "" {
		ext("cs3", e.Technique)
		ext("cs3Label", "attackTechnique")
	}
	if e.PolicyID != "" {
		ext("cs4", e.PolicyID)
		ext("cs4Label", "policyId")
	}
	if e.Backend != "" {
		ext("cs5", e.Backend)
		ext("cs5Label", "backend")
	}
	if e.Origin != "" {
		ext("cs6", e.Origin)
		ext("cs6Label", "originNode")
	}
	if e.Confidence != 0 {
		ext("cn1", strconv.Itoa(e.Confidence))
		ext("cn1Label", "confidence")
	}
	if e.Count != 0 {
		ext("cnt", strconv.Itoa(e.Count))
	}
	ext("act", string(e.Action))
	ext("suser", e.Author)
	ext("msg", e.Reason)
	if !e.ExpiresAt.IsZero() {
		ext("end", strconv.FormatInt(e.ExpiresAt.UnixMilli(), 10))
	}
	if a := e.Alert; a != nil {
		ext("cat", a.Rule)
		ext("outcome", a.State)
		ext("flexString1", a.Group)
		ext("flexString1Label", "alertGroup")
		ext("flexString2", a.ID)
		ext("flexString2Label", "alertId")
		if !a.Since.IsZero() {
			ext("start", strconv.FormatInt(a.Since.UnixMilli(), 10))
		}
		if a.Repeat != 0 {
			ext("cn2", strconv.Itoa(a.Repeat))
			ext("cn2Label", "reminder")
		}
	}
	return b.String()
}

func escapeHeader(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

func escapeExt(s string) string {
	return strings.NewReplacer(`\`, `\\`, "=", `\=`, "\r\n", `\n`, "\n", `\n`, "\r", `\r`).Replace(s)
}
