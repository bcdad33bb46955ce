// Package webhook delivers security events to a SOAR or any HTTP
// receiver: each event is POSTed as JSON, signed, and identified by its
// event ID so that the receiver can drop duplicates.
//
// # Signature
//
// Every attempt carries two headers:
//
//	X-Meshward-Timestamp: <Unix time of the attempt, decimal seconds>
//	X-Meshward-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// The MAC covers the timestamp and the exact body bytes, so a receiver
// that checks both (Verify does) refuses a captured delivery replayed
// after its maximum age, and a timestamp moved forward breaks the
// signature. The "v1=" prefix names the scheme; the header name is the
// one earlier versions used with "sha256=" over the body alone, which no
// longer verifies, so a receiver not yet updated refuses every delivery
// rather than accepting unsigned timestamps. A retry is signed afresh
// with its own timestamp. The event ID is in the body as well as in
// X-Meshward-Event-Id; only the body is signed, so a receiver dedupes on
// the body's ID.
//
// # Delivery
//
// Events pass through a durable queue first (the Queue interface; the
// store package implements it on Badger), so nothing is lost while the
// receiver is down or across a restart. Delivery is in order, one event at
// a time, retried with exponential backoff; an event the receiver rejects
// for good (a 4xx other than 408 and 429) is dropped and counted.
// Redirects are never followed, with the default client or one the
// caller supplies: a 3xx is a failed attempt, counted (Stats.Redirects)
// and retried like a 5xx, so that a receiver's redirect cannot send
// signed events to another host.
// Delivery is at least once: a crash between the receiver's answer and
// the acknowledgement in the queue sends that event again, with the same
// ID.
package webhook
