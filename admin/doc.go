// Package admin is Meshward's admin API: HTTP and JSON on a Unix socket
// and, optionally, on TCP with TLS, with a Go client that the meshward CLI
// uses. The API is described by openapi.yaml, embedded in the package and
// served at /v1/openapi.yaml; a test keeps it and the routes in step.
//
// # Who may do what
//
// Every request but the OpenAPI document carries a bearer token
// ("Authorization: Bearer mwt_<id>_<secret>"), or the cookie of a
// dashboard session started with one (see The web dashboard). A token
// holds one role:
//
//   - viewer reads everything (status, members, peers, policies,
//     indicators, indicator reports, sightings, detections, the audit
//     trail, the mesh's operator keys and join tokens);
//   - responder also adds and removes local decisions (node-local,
//     time-bounded blocks), acknowledges, assigns and comments on
//     detections, publishes indicator
//     reports and submits the operator commands a responder operator may
//     sign (block, allow, revoke);
//   - admin also manages tokens, submits every operator command and
//     reads the runtime profiles under /debug/pprof/ (net/http/pprof's
//     handlers on the API's own mux; a profile's seconds at most 60).
//
// A missing or invalid token gets 401, a valid token whose role is too
// weak gets 403; every error body is {"error": "<message>", "code":
// "<machine code>"}.
//
// Tokens are random: a 16-hex-digit ID and a 256-bit secret. The store
// keeps the ID, the role and SHA-256(domain, ID, secret), never the
// secret, which is shown once, when the token is created. A request's
// token is looked up by its ID (one key read) and its hash compared in
// constant time.
//
// # The web dashboard
//
// The dashboard (web/, embedded; dashboard*.go) is served under /ui/ on
// every listener, and on Options.DashboardHTTP, a plain-HTTP listener
// refused unless its address is loopback. POST /ui/login takes an API
// token (form field token; a failure is counted and audited like any
// failed authentication) and starts a session: a random 256-bit ID in an
// HttpOnly, SameSite=Strict cookie (Secure over HTTPS), kept server-side
// as its SHA-256 in a bounded map (the least recently used is ended when
// it is full), ending after Sessions.MaxAge or Sessions.Idle unused. The
// session holds the token's ID only: each request re-reads the token and
// goes through the route table as the token would, so a revoked token
// ends its sessions and a viewer's session is refused a change as the
// viewer's token is. A change made with a session must carry the
// session's CSRF token (GET /ui/session) in X-CSRF-Token, compared in
// constant time; a missing or wrong one gets 403, counted by reason
// (meshward_admin_dashboard_refused_total). POST /ui/logout ends it.
// Every answer carries a Content-Security-Policy allowing the page's own
// scripts and styles only, and X-Frame-Options DENY.
//
// GET /v1/events/stream (viewer) serves the node's detections, the
// sightings it receives and its policy changes (PublishEvent) as
// Server-Sent Events: each stream has a bounded buffer, and one that
// falls behind is ended and counted, never waited for.
//
// # The first token
//
// Whoever can read the node's data directory already owns the node (its
// identity key and database are there). So at every start the server makes
// sure that the file Options.TokenFile (by default admin.token next to the
// socket, in the data directory) holds a valid admin token, creating one
// named "local-admin" and writing the file with mode 0600 when the file is
// missing or its token no longer works. The CLI reads that file when it
// talks to a Unix socket and neither --token nor MESHWARD_TOKEN is set, so
// the node's owner (root, or the meshward user) can run
// `meshward token create --role viewer` straight away. Revoking
// local-admin locks it out until the next restart.
//
// # The Unix socket
//
// The socket is created with mode 0600: it is bound inside a fresh 0700
// directory next to its final path, chmodded, then renamed into place, so
// it is never reachable with wider permissions. A stale socket left by a
// crashed node is replaced; a socket another process still answers on, or
// a file that is not a socket, is an error.
//
// # Detections and acknowledgements
//
// A detection is one of this node's own sightings (GET /v1/detections
// lists those among the most recent 10000). Its ID, DetectionID, is 16 hex
// digits of a hash of the sighting's origin and sequence number, so it is
// the same in every request and after a restart. A responder acknowledges
// a detection (POST /v1/detections/{id}/ack, with an optional note) so
// that the team sees it is handled; the acknowledgement — who, when, the
// note — is kept in the store (one key per detection), shown with the
// detection, and may be withdrawn (DELETE). A detection is acknowledged
// once: a second acknowledgement is refused (409) and names the first.
//
// # Indicator reports
//
// An indicator report is intelligence shared mesh-wide (intel.IndicatorReport):
// it informs analysts and scoring and never blocks by itself. A responder
// publishes one (POST /v1/reports) with an indicator written as an operator
// writes it, a confidence, labels, a technique, a description and how long
// it applies; the server canonicalises the indicator, sets the source to
// "operator:<token name>" and the validity to [now, now+valid_for), and
// answers 400 naming the field that fails validation before the node signs
// and gossips it. GET /v1/reports lists the reports the node holds, its own
// and other nodes', newest first (at most 1000), optionally only those
// valid now (or not); GET /v1/iocs/{indicator} lists an indicator's reports
// among the 1000 most recent.
//
// # Operator commands
//
// The mesh changes only through operator commands (intel.OperatorCommand):
// block, allow, revoke, protect, unprotect, remove a member, set the
// corroboration rule or the safety floors, add or remove an operator key,
// create a join token. The operator signs each on their own machine with
// an ed25519 operator key (the meshward CLI does it); the node's key never
// signs one. GET /v1/operator names the mesh, whose ID the command's
// header must carry, and lists the operator keys and join tokens. POST
// /v1/operator/commands takes an intel.OperatorSigned: the server verifies
// the signature and decodes the body strictly (400 naming what is wrong,
// 403 for a signature that does not verify), checks that the request's
// token holds the role the command needs (TokenRole: responder for block,
// allow and revoke, admin otherwise), so that a mesh-wide change needs
// both a token and an operator signature, and hands it to the node
// (OperatorService), whose consensus checks that the key is an operator's
// whose role permits the command, the mesh, the time window and the
// nonce. The audit trail records the action as operator.<op>, the target
// (an indicator, policy, prefix, member, key or join token) and, in the
// detail, the operator key ID and the command's parameters; for
// block_bulk and allow_bulk (up to intel.MaxBulkIndicators indicators in
// one command, committed whole or not at all) the target is the count and
// the detail names the first five indicators.
//
// # Volume
//
// No request copies every policy. GET /v1/policies answers a page at a
// time ({"items": [...], "next_cursor": "..."}; limit 1 to 10000, default
// 100) from PolicyService.MeshPolicyPage; a single policy, or the policies
// on an indicator and on the ranges and parent domains covering it, are
// looked up by ID (MeshPolicy). A body is bounded per route: 64 KiB, or
// for operator commands the base64 of intel.MaxOperatorBody plus 1 KiB
// (219,480 bytes for a 160 KiB command, room for 2,000 addresses); a
// larger one is answered with 413. Requests refused for what they ask are counted
// in meshward_admin_requests_rejected_total{reason} (body_too_large,
// bad_limit, bad_cursor, profile_seconds, unknown_profile).
//
// # Audit
//
// Every request that changes something (any method but GET) is written to
// the audit trail in the store — who (token ID and name), what, on what,
// when, and the result — whether it succeeded, failed or was denied for
// its role. Requests without a valid token (401) are counted by reason in
// meshward_admin_auth_failures_total{reason} (missing_token,
// malformed_token, unknown_token, bad_secret, error; 403s as forbidden)
// and audited as "auth.fail", rate-limited so that anyone who can reach
// the socket cannot fill the trail: a source's (the socket, or a TCP
// client's address) first failure at once, the later ones at most once a
// minute in one entry whose count is how many failures it stands for, so
// that the counts add up. At most 256 sources are tracked; failures from
// further ones share one entry, "other sources". Close writes what is
// pending.
//
// # Configuration and lifecycle
//
// Config is the node configuration's admin section (socket, listen,
// tls_cert, tls_key, audit_retention) with DefaultConfig and Validate;
// SocketPathIn applies the default socket, admin.sock in the data
// directory. New checks Options and builds a server without starting
// anything; Start(ctx) writes the token file, listens and serves; Close
// shuts the listeners down, waits for the serving goroutines and removes
// the socket. The start context is the parent of every request's context,
// but cancelling it does not stop the server: Close does.
//
// # What it talks to
//
// The server reaches the node through the Node interface, declared here
// and implemented by the node. Node is the union of one small interface
// per noun of the API — StatusService, MemberService, PolicyService,
// SightingService, ReportService, OperatorService — and each handler uses
// only the one it needs. Tokens, the audit trail and acknowledgements are
// kept through Store (TokenStore, AuditStore, AckStore), implemented by
// *store.Store.
// The handlers live in one file per noun (status, members, policies,
// iocs, reports, sightings, detections, audit, token, operator, pprof). The
// server must never hold node state of its own, decide policy (the node
// and consensus do), or log a token secret.
//
// # STIX 2.1 and TAXII 2.1
//
// GET /v1/export/stix streams what the node holds as one STIX 2.1 bundle
// (taxii_export.go). Under /taxii2/, beside the routes and outside
// openapi.yaml, the same objects are served as TAXII 2.1 (taxii.go):
// discovery, one API root (/taxii2/api/) and three read-only collections
// (indicators, sightings, policies) with objects, manifest, an object and
// its versions, filtered by added_after and match[type|id|version] and
// paged by limit and next. Any token of role viewer or higher reads them,
// as a bearer token or as the password of HTTP Basic authentication (any
// user name); failures are counted and audited as the API's. Responses
// are application/taxii+json;version=2.1, errors TAXII error messages; an
// Accept header that does not allow that media type gets 406 and a write
// 405. The data comes through STIXSource (taxii_source.go): the reports
// and sightings among the 10000 most recent of each, every policy in
// force. An object's date_added is its record's arrival (reports,
// sightings) or creation (policies), to the microsecond; the next cursor
// is a date_added and a record key, so pages stay stable while objects
// arrive. Identities and attack-patterns, which stand for names rather
// than records, appear in the export but not in the collections.
package admin
