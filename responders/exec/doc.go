// Package exec is the responders backend that runs an operator's command
// for every block added and removed: a script that updates a cloud
// security group, a router ACL, anything Meshward has no backend for.
//
// Commands are argv lists run without a shell, with a timeout. In each
// argument "{indicator}", "{type}", "{key}" and "{expires}" (RFC 3339, or
// empty) are replaced; if no argument names {indicator}, the indicator is
// appended as the last argument. The commands should be idempotent: the
// backend remembers what it added in a state file (if configured) and
// otherwise in memory only, so after a restart without one it adds
// everything again.
package exec
