// Package dns is the DNS sinkhole backend of the responders: it blocks
// domain indicators by answering NXDOMAIN for them and every name below
// them. It writes an Unbound include file (local-zone ... always_nxdomain)
// and/or an RPZ zone file, each replaced atomically, then runs the
// resolver's reload command.
//
// The files are the backend's state: Current parses them back, so a file
// edited or deleted behind Meshward's back is repaired by the next
// reconcile. The backend owns those two files and nothing else; it never
// edits the resolver's own configuration.
package dns
