// Package siem defines the security events a node reports (detections,
// sightings received, policies committed, enforced and expired) and the
// outputs that carry them to a SIEM: CEF over syslog (RFC 5424, UDP or
// TCP with octet counting) and JSON lines in a file.
//
// Emitting never blocks the caller: Output queues events in a bounded
// queue, and every event it cannot queue or deliver is counted. It must
// never decide anything about an event; it only reports.
package siem
