// Package feeds reads threat feeds and writes them back out.
//
// A feed is a list of indicators published by someone else: a plain list
// (one value a line, hosts-file lines too), CSV, JSON lines, or a MISP feed
// (manifest.json plus one JSON file per event). Each parser streams: it
// hands every Entry to a callback as it reads and never holds the whole
// feed, so a feed of millions of lines costs the same memory as one of a
// hundred. Every error names the file and the position (line, or event
// UUID and attribute index); an invalid value is a counted skip with its
// reason, or an error in strict mode.
//
// Imports are all or nothing: Check runs a parser over the input once to
// count and validate, and only when that pass succeeds does a second pass
// hand entries on to be published.
//
// Fetcher brings a feed in from an HTTPS URL or a local file with
// conditional requests (ETag, Last-Modified), a body size limit and
// timeouts; Backoff spaces retries after failures. Exporters write entries
// as a MISP feed directory, CSV or a plain list.
//
// Feed entries are intelligence, not policy: the node publishes them as
// signed indicator reports, and nothing here ever blocks anything.
package feeds
