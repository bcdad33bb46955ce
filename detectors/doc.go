// Package detectors turns log lines into sightings.
//
// It owns three layers, each replaceable on its own:
//
//   - Sources yield raw lines (FileSource follows a file across rotation and
//     truncation, like tail -F, by polling).
//   - Parsers recognise the lines a rule cares about and extract the source
//     address and the event time (the OpenSSH parser scans bytes; no regexp
//     runs on the hot path).
//   - The Engine applies a Rule, a sliding-window threshold kept as data, to
//     the parsed events and emits an intel.Sighting when one address crosses
//     it, then holds that address in cooldown.
//
// Everything an attacker writes into a log (user names, bad UTF-8, absurdly
// long lines) is data: no input line is ever fatal, and every line that is
// skipped is counted in EngineStats. Per-source state is bounded
// (EngineOptions.MaxSources) and evicts the least recently active source.
//
// OpenSSH user names are chosen by the attacker and may contain
// " from <addr> port <n>"; the parser trusts only the last " from " of a
// message, which sshd writes after the user name. One invalid-user
// connection logs both "Invalid user" and "Failed ... for invalid user"
// for its first attempt; the engine counts that attempt once.
//
// The package must never sign, store, publish or enforce anything: it hands
// sightings to a callback and the node decides what they mean. It must never
// report an address in EngineOptions.Allow.
package detectors
