// Package detectors turns log lines into sightings.
//
// It owns three layers, each replaceable on its own:
//
//   - Sources yield raw lines: FileSource follows a file across rotation
//     and truncation, like tail -F, by polling; GlobSource follows every
//     file matching glob patterns, one FileSource each; ReaderSource reads
//     an io.Reader (standard input); SyslogSource listens for RFC 3164 and
//     RFC 5424 messages over UDP and TCP (loopback by default) and
//     JournaldSource follows the systemd journal through journalctl, both
//     turning messages into the syslog line shape the parsers read;
//     MultiSource runs several sources into one engine. ReadLines is the
//     allocation-free line splitter used for offline runs. Each kind a
//     node configures registers a factory under its name from its own
//     file (RegisterSource: "files", "journald", "syslog"; tests swap one
//     with OverrideSource); NewSources builds every kind the detectors
//     section (Config) enables, so the node knows no kind by name. A
//     source that binds something as it starts (the syslog listener) is
//     a ReadySource; WaitReady waits for it. The syslog wire format
//     (RFC 6587 framing, RFC 3164/5424) lives in syslog_format.go, apart
//     from the listener; the parsers live in parse_*.go, one file per
//     log family.
//   - Parsers turn a line into an Event with a small fixed set of named
//     fields (kind, program, src, port, dst, dst_port, user, method, path,
//     status, proto, tag, agent), one parse_*.go file per log family:
//     OpenSSH in every mode fail2ban knows (failed and refused logins,
//     invalid and illegal users, pre-authentication disconnects, key
//     exchange and identification failures; parse_ssh.go), PAM of any
//     service in both tag forms, sudo and su (parse_pam.go), Postfix
//     SASL and relay refusals, Dovecot and Exim (parse_mail.go), vsftpd, ProFTPD and
//     Pure-FTPd (parse_ftp.go), web access logs in the combined format
//     (parse_web.go), nginx and Apache error logs and nginx limit_req
//     (parse_weberror.go), MySQL, MariaDB and PostgreSQL (parse_db.go),
//     OpenVPN (parse_vpn.go), kernel firewall LOG lines
//     (parse_firewall.go), and JSON lines of Traefik and Caddy access
//     logs, Kubernetes API audit events and AWS CloudTrail records
//     (parse_json.go, a scanner that reads the few paths it needs without
//     decoding into Go values). parseLine dispatches a syslog line on its
//     program tag, so a family costs the lines of other programs one
//     comparison, and any other line on its first byte. They scan bytes;
//     no regexp runs on the hot path, and a line is not copied.
//   - A source may be logged by host name (pam_unix's rhost, sshd with
//     UseDNS, Pure-FTPd, MySQL without skip-name-resolve): the event's Host
//     is set and its sighting reports the name as a domain indicator. A
//     name that names no remote party (localhost, a name without a dot, a
//     local domain) and a failure without a remote party (sudo, su, a
//     console login, a CloudTrail source that is an AWS service) are
//     counted (EngineStats.Local) and never reported. EngineOptions.Allow
//     applies to addresses only. Resolving the names (EngineOptions.Resolve,
//     resolve.go) is off by default: it also reports each address a name
//     resolves to, at half the confidence and never an allowed one, with
//     lookups bounded in time, cached in a bounded cache and rate-limited,
//     made outside the engine's lock after the line's other sightings.
//   - Rules are data (YAML, decoded strictly; see Rule): conditions on
//     event fields, a group (the source address by default), a threshold
//     of events or of distinct values over a sliding window, or a leaky
//     bucket, and a cooldown; a rule may name rules that suppress it
//     (suppressed_by: one of them fired for the group and is in its
//     cooldown, so the attack is reported once, and the firing left out
//     is counted, EngineStats.Suppressed). A pack is embedded, one file per log family
//     loaded in name order (rules/builtin.yaml: ssh-bruteforce,
//     ssh-user-enum, ssh-slow-bruteforce, ssh-preauth-abuse,
//     ssh-kex-probe, pam-bruteforce,
//     web-path-scan, web-login-bruteforce, port-scan; cloud.yaml:
//     k8s-api-denied, aws-console-bruteforce; db.yaml: db-bruteforce;
//     ftp.yaml: ftp-bruteforce; mail.yaml: mail-auth-bruteforce,
//     mail-auth-spray, mail-relay-probe; vpn.yaml: vpn-bruteforce; web.yaml:
//     web-auth-bruteforce, web-401-bruteforce, web-rate-limited,
//     web-bad-bot, wordpress-bruteforce, web-sensitive-files), each with
//     an ATT&CK technique, a
//     severity and a description; LoadRules adds a directory's rules or
//     replaces built-in ones by name. Loading (rules.go) is apart from compilation
//     (compile.go), which turns a Rule into its matcher. The Engine
//     applies a RuleSet and emits an intel.Sighting when a group crosses
//     a rule; Run feeds a source's lines to any Processor (an Engine, or
//     a caller's wrapper that swaps engines at run time). A sighting never
//     reports a time after the engine's clock: lines stamped ahead of it
//     are reported at the clock and counted (EngineStats.Ahead), since the
//     mesh refuses sightings seen after their envelope was sealed.
//
// Config is the detectors section of a node's configuration, with its
// defaults (DefaultConfig) and checks (Validate, whose field paths are
// relative to the section).
//
// Everything an attacker writes into a log (user names, paths, bad UTF-8,
// absurdly long lines) is data: no input line is ever fatal, and every
// line that is skipped is counted (EngineStats.Skipped, LineStats and the
// sources' Truncated). Lines that are not valid UTF-8 are counted
// (EngineStats.NonUTF8) but still counted by the rules, so that one bad
// byte in a user name does not hide an attack. State is bounded per rule
// (EngineOptions.MaxSources) and evicts the least recently active group,
// reusing its memory; evictions are counted per rule.
//
// OpenSSH user names are chosen by the attacker and may contain
// " from <addr> port <n>"; so may what sshd writes after the source of a
// failed login ("ssh2: <key>": a certificate's key ID, a hostbased
// client's names, a GSSAPI principal), and sshd cuts long messages
// anywhere in it. The parser strips that key information before it looks
// for the source from the end: every place the source may be ("... from
// <addr> port <n> ssh2" at the end of the message or before ": ") is a
// candidate, the one sshd wrote always among them, so a line with two
// candidates is malformed (counted in EngineStats.Skipped, never
// attributed), and each message must end as sshd ends it. One invalid-user
// connection logs both "Invalid user" and "Failed ... for invalid user"
// for its first attempt; a rule counting both counts that attempt once.
//
// Sources start no goroutine until Run, which takes the context that
// stops them and returns only once everything it started has ended.
//
// The package must never sign, store, publish or enforce anything: it hands
// sightings to a callback and the node decides what they mean. It must never
// report an address in EngineOptions.Allow.
package detectors
