// Package events is the "events" section of a node's configuration and
// the one place that turns it into a running SIEM and SOAR output: CEF over
// syslog and JSON lines (siem) and a signed webhook with a durable queue
// (webhook), behind one bounded siem.Output.
//
// It only builds; it never decides what an event says or whether to emit
// it.
package events
