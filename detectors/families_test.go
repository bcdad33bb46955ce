package detectors

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// A generated mixed log per log family, with known ground truth: attackers
// (each using one format of its family for a whole burst, by address or
// by host name) must all be reported by the rule of their format, and no
// benign source (one or two failures, and many ordinary lines) by any
// rule. Lines that break a format on purpose are counted as malformed.

// lineCtx is what a format writes one line from.
type lineCtx struct {
	src  string    // the source: an address or a host name
	t    time.Time // the line's time (UTC)
	i    int       // the line's number, for ports, pids and paths
	rng  *rand.Rand
	user string
}

// format is one way a family writes a failure, and the rule that must
// report a source that repeats it.
type format struct {
	rule  string
	hosts bool // the format may name the source by host name
	line  func(c lineCtx) string
}

type family struct {
	name      string
	attacks   []format
	benign    []func(c lineCtx) string // a benign source's failure
	noise     []func(c lineCtx) string // ordinary lines; c.src is a benign source
	malformed []func(c lineCtx) string // lines of a known kind that cannot be read
}

func sysStamp(t time.Time) string { return t.Format(time.Stamp) }
func isoStamp(t time.Time) string { return t.Format("2006-01-02 15:04:05") }
func webStamp(t time.Time) string { return t.Format("02/Jan/2006:15:04:05 -0700") }
func rfcStamp(t time.Time) string { return t.Format(time.RFC3339Nano) }
func sl(c lineCtx, tag, msg string) string {
	return fmt.Sprintf("%s host-1 %s: %s", sysStamp(c.t), tag, msg)
}
func pid(c lineCtx, prog string) string { return fmt.Sprintf("%s[%d]", prog, 1000+c.i%30000) }
func access(c lineCtx, req string, status int, agent string) string {
	return fmt.Sprintf(`%s - - [%s] "%s" %d %d "-" "%s"`, c.src, webStamp(c.t), req, status, 100+c.i%900, agent)
}

var browser = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

var families = []family{
	{
		name: "auth",
		attacks: []format{
			{"ssh-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Failed password for root from %s port %d ssh2", c.src, 30000+c.i%30000))
			}},
			{"ssh-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Invalid user %s from %s port %d", c.user, c.src, 30000+c.i%30000))
			}},
			{"ssh-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Illegal user %s from %s", c.user, c.src))
			}},
			{"ssh-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("User root from %s not allowed because not listed in AllowUsers", c.src))
			}},
			{"pam-bruteforce", true, func(c lineCtx) string {
				return sl(c, pid(c, "sshd(pam_unix)"), fmt.Sprintf("authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=%s  user=root", c.src))
			}},
			{"pam-bruteforce", true, func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s", c.src))
			}},
			{"ssh-slow-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Failed password for invalid user %s from %s port %d ssh2", c.user, c.src, 30000+c.i%30000))
			}},
			{"ssh-preauth-abuse", false, func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Connection closed by authenticating user root %s port %d [preauth]", c.src, 30000+c.i%30000))
			}},
			{"ssh-kex-probe", false, func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Did not receive identification string from %s port %d", c.src, 30000+c.i%30000))
			}},
			{"ssh-kex-probe", false, func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Unable to negotiate with %s port %d: no matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]", c.src, 30000+c.i%30000))
			}},
		},
		benign: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Failed password for alice from %s port %d ssh2", c.src, 40000+c.i%20000))
			},
			func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s  user=alice", c.src))
			},
		},
		noise: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Accepted publickey for deploy from %s port %d ssh2: ED25519 SHA256:Zk4cQ0vM1yq8kCwGmJ3Xxq1", c.src, 40000+c.i%20000))
			},
			func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Disconnected from user deploy %s port %d", c.src, 40000+c.i%20000))
			},
			func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), fmt.Sprintf("Received disconnect from %s port %d:11: disconnected by user", c.src, 40000+c.i%20000))
			},
			func(c lineCtx) string {
				return sl(c, pid(c, "CRON"), "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)")
			},
			func(c lineCtx) string {
				return sl(c, "sudo", "   alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash")
			},
			func(c lineCtx) string { return sl(c, pid(c, "su"), "FAILED SU (to root) alice on pts/0") },
			func(c lineCtx) string {
				return sl(c, pid(c, "login"), "pam_unix(login:auth): authentication failure; logname=LOGIN uid=0 euid=0 tty=tty1 ruser= rhost=  user=root")
			},
			func(c lineCtx) string {
				return sl(c, "systemd[1]", "Started session-1.scope - Session 1 of User deploy.")
			},
		},
		malformed: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "sshd"), "Failed password for root from 999.1.1.1 port 22 ssh2")
			},
			func(c lineCtx) string {
				return sl(c, pid(c, "sshd(pam_unix)"), "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=bad!host  user=root")
			},
		},
	},
	{
		name: "mail",
		attacks: []format{
			{"mail-auth-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "postfix/submission/smtpd"), fmt.Sprintf("warning: unknown[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", c.src))
			}},
			{"mail-auth-bruteforce", false, func(c lineCtx) string {
				return sl(c, "dovecot", fmt.Sprintf("imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<%s@example.com>, method=PLAIN, rip=%s, lip=192.0.2.10, TLS, session=<s%d>", c.user, c.src, c.i))
			}},
			{"mail-auth-bruteforce", false, func(c lineCtx) string {
				// auth_verbose: the authentication process's line, then the
				// login process's
				return sl(c, "dovecot", fmt.Sprintf("auth: passwd-file(%s@example.com,%s,<s%d>): Password mismatch", c.user, c.src, c.i)) + "\n" +
					sl(c, "dovecot", fmt.Sprintf("pop3-login: Aborted login (auth failed, 1 attempts in 3 secs): user=<%s@example.com>, method=PLAIN, rip=%s, lip=192.0.2.10, session=<s%d>", c.user, c.src, c.i))
			}},
			{"mail-relay-probe", false, func(c lineCtx) string {
				return sl(c, pid(c, "postfix/smtpd"), fmt.Sprintf("NOQUEUE: reject: RCPT from unknown[%s]: 554 5.7.1 <%s@example.net>: Relay access denied; from=<spam@example.org> to=<%s@example.net> proto=ESMTP helo=<probe>", c.src, c.user, c.user))
			}},
			{"mail-auth-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf("%s dovecot_login authenticator failed for (User) [%s]:%d: 535 Incorrect authentication data (set_id=%s)", isoStamp(c.t), c.src, 30000+c.i%30000, c.user)
			}},
		},
		benign: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "postfix/smtpd"), fmt.Sprintf("warning: unknown[%s]: SASL PLAIN authentication failed: authentication failure", c.src))
			},
			func(c lineCtx) string {
				return sl(c, "dovecot", fmt.Sprintf("auth: passwd-file(alice@example.com,%s,<b%d>): Password mismatch", c.src, c.i)) + "\n" +
					sl(c, "dovecot", fmt.Sprintf("imap-login: Disconnected (auth failed, 1 attempts in 4 secs): user=<alice@example.com>, method=PLAIN, rip=%s, lip=192.0.2.10, TLS, session=<b%d>", c.src, c.i))
			},
		},
		noise: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "postfix/smtpd"), fmt.Sprintf("connect from mail.example.org[%s]", c.src))
			},
			func(c lineCtx) string {
				return sl(c, pid(c, "postfix/smtpd"), fmt.Sprintf("NOQUEUE: reject: RCPT from mail.example.org[%s]: 450 4.7.1 <alice@example.com>: Recipient address rejected: Greylisted; from=<b@example.org> to=<alice@example.com> proto=ESMTP helo=<mail.example.org>", c.src))
			},
			func(c lineCtx) string {
				return sl(c, "dovecot", fmt.Sprintf("imap-login: Login: user=<alice@example.com>, method=PLAIN, rip=%s, lip=192.0.2.10, mpid=%d, TLS, session=<n%d>", c.src, c.i, c.i))
			},
			func(c lineCtx) string {
				return fmt.Sprintf("%s 1rAbCd-000%d-Xy <= alice@example.com H=(client) [%s]:%d P=esmtpsa A=dovecot_login:alice S=1234", isoStamp(c.t), c.i%1000, c.src, 40000+c.i%20000)
			},
		},
		malformed: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "postfix/smtpd"), "warning: unknown[not-an-address]: SASL LOGIN authentication failed: UGFzc3dvcmQ6")
			},
		},
	},
	{
		name: "ftp",
		attacks: []format{
			{"ftp-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "vsftpd"), fmt.Sprintf(`[%s] FAIL LOGIN: Client "%s"`, c.user, c.src))
			}},
			{"ftp-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf(`%s [pid %d] [%s] FAIL LOGIN: Client "%s"`, c.t.Format("Mon Jan _2 15:04:05 2006"), c.i, c.user, c.src)
			}},
			{"ftp-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "proftpd"), fmt.Sprintf("ftp.example.com (%s[%s]) - USER %s (Login failed): Incorrect password", c.src, c.src, c.user))
			}},
			{"ftp-bruteforce", true, func(c lineCtx) string {
				return sl(c, pid(c, "pure-ftpd"), fmt.Sprintf("(?@%s) [WARNING] Authentication failed for user [%s]", c.src, c.user))
			}},
		},
		benign: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "vsftpd"), fmt.Sprintf(`[alice] FAIL LOGIN: Client "%s"`, c.src))
			},
		},
		noise: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "vsftpd"), fmt.Sprintf(`[alice] OK LOGIN: Client "%s"`, c.src))
			},
			func(c lineCtx) string {
				return fmt.Sprintf(`%s [pid %d] CONNECT: Client "%s"`, c.t.Format("Mon Jan _2 15:04:05 2006"), c.i, c.src)
			},
			func(c lineCtx) string {
				return sl(c, pid(c, "proftpd"), fmt.Sprintf("ftp.example.com (%s[%s]) - USER alice: Login successful.", c.src, c.src))
			},
		},
		malformed: []func(c lineCtx) string{
			func(c lineCtx) string { return sl(c, pid(c, "vsftpd"), `[root] FAIL LOGIN: Client "no-address"`) },
		},
	},
	{
		name: "web",
		attacks: []format{
			{"web-auth-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf(`%s [error] 900#900: *%d user "%s": password mismatch, client: %s, server: example.com, request: "GET /private/ HTTP/1.1", host: "example.com"`, c.t.Format("2006/01/02 15:04:05"), c.i, c.user, c.src)
			}},
			{"web-auth-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf(`[%s] [auth_basic:error] [pid 901] [client %s:%d] AH01618: user %s not found: /private`, c.t.Format("Mon Jan 02 15:04:05.000000 2006"), c.src, 30000+c.i%30000, c.user)
			}},
			{"web-401-bruteforce", false, func(c lineCtx) string { return access(c, "GET /admin/ HTTP/1.1", 401, browser) }},
			{"web-rate-limited", false, func(c lineCtx) string {
				return fmt.Sprintf(`%s [error] 900#900: *%d limiting requests, excess: 12.500 by zone "api", client: %s, server: example.com, request: "GET /api/search HTTP/1.1", host: "example.com"`, c.t.Format("2006/01/02 15:04:05"), c.i, c.src)
			}},
			{"web-bad-bot", false, func(c lineCtx) string {
				return access(c, fmt.Sprintf("GET /index.php?id=%d HTTP/1.1", c.i), 200, "sqlmap/1.7.2#stable (https://sqlmap.org)")
			}},
			{"web-bad-bot", false, func(c lineCtx) string {
				return access(c, "GET / HTTP/1.1", 200, "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000003)")
			}},
			{"wordpress-bruteforce", false, func(c lineCtx) string { return access(c, "POST /wp-login.php HTTP/1.1", 200, browser) }},
			{"web-sensitive-files", false, func(c lineCtx) string {
				return access(c, "GET "+[]string{"/.env", "/.git/config", "/backup/wp-config.php.bak", "/.aws/credentials", "/cgi-bin/../../../../etc/passwd"}[c.i%5]+" HTTP/1.1", 404, "Mozilla/5.0")
			}},
			{"wordpress-bruteforce", false, func(c lineCtx) string { return access(c, "POST /xmlrpc.php HTTP/1.1", 200, "Mozilla/5.0") }},
		},
		benign: []func(c lineCtx) string{
			func(c lineCtx) string { return access(c, "GET /private/ HTTP/1.1", 401, browser) },
			func(c lineCtx) string {
				return fmt.Sprintf(`%s [error] 900#900: *%d user "alice": password mismatch, client: %s, server: example.com, request: "GET /private/ HTTP/1.1", host: "example.com"`, c.t.Format("2006/01/02 15:04:05"), c.i, c.src)
			},
			func(c lineCtx) string { return access(c, "POST /wp-login.php HTTP/1.1", 200, browser) },
		},
		noise: []func(c lineCtx) string{
			func(c lineCtx) string { return access(c, "GET / HTTP/1.1", 200, browser) },
			func(c lineCtx) string { return access(c, "GET /static/app.js HTTP/1.1", 304, browser) },
			func(c lineCtx) string { return access(c, "GET /favicon.ico HTTP/1.1", 404, browser) },
			func(c lineCtx) string { return access(c, "POST /wp-login.php HTTP/1.1", 302, browser) },
			func(c lineCtx) string { return access(c, "GET /feed HTTP/1.1", 200, "curl/8.5.0") },
			func(c lineCtx) string {
				return fmt.Sprintf(`%s [error] 900#900: *%d no user/password was provided for basic authentication, client: %s, server: example.com, request: "GET /private/ HTTP/1.1"`, c.t.Format("2006/01/02 15:04:05"), c.i, c.src)
			},
		},
		malformed: []func(c lineCtx) string{
			func(c lineCtx) string {
				return fmt.Sprintf(`%s [error] 900#900: *%d limiting requests, excess: 1.000 by zone "api", client: nope, server: example.com`, c.t.Format("2006/01/02 15:04:05"), c.i)
			},
		},
	},
	{
		name: "db",
		attacks: []format{
			{"db-bruteforce", true, func(c lineCtx) string {
				return fmt.Sprintf("%s %d [Note] [MY-010926] [Server] Access denied for user '%s'@'%s' (using password: YES)", rfcStamp(c.t), c.i, c.user, c.src)
			}},
			{"db-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf("%s %d [Warning] Access denied for user '%s'@'%s' (using password: YES)", isoStamp(c.t), c.i, c.user, c.src)
			}},
			{"db-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf(`%s.%03d UTC [%d] %s %s@postgres FATAL:  password authentication failed for user "%s"`, isoStamp(c.t), c.i%1000, c.i, c.src, c.user, c.user)
			}},
			{"db-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf(`%s.%03d UTC [%d] FATAL:  no pg_hba.conf entry for host "%s", user "%s", database "postgres", SSL off`, isoStamp(c.t), c.i%1000, c.i, c.src, c.user)
			}},
		},
		benign: []func(c lineCtx) string{
			func(c lineCtx) string {
				return fmt.Sprintf("%s %d [Warning] Access denied for user 'app'@'%s' (using password: YES)", isoStamp(c.t), c.i, c.src)
			},
		},
		noise: []func(c lineCtx) string{
			func(c lineCtx) string {
				return fmt.Sprintf(`%s.%03d UTC [%d] %s app@app LOG:  connection authorized: user=app database=app`, isoStamp(c.t), c.i%1000, c.i, c.src)
			},
			func(c lineCtx) string {
				return fmt.Sprintf("%s %d [Warning] [MY-010055] [Server] IP address '%s' could not be resolved: Name or service not known", rfcStamp(c.t), c.i, c.src)
			},
		},
		malformed: []func(c lineCtx) string{
			func(c lineCtx) string {
				return fmt.Sprintf(`%s.000 UTC [%d] FATAL:  password authentication failed for user "nohost"`, isoStamp(c.t), c.i)
			},
		},
	},
	{
		name: "vpn",
		attacks: []format{
			{"vpn-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "ovpn-server"), fmt.Sprintf("%s:%d TLS Auth Error: Auth Username/Password verification failed for peer", c.src, 30000+c.i%30000))
			}},
			{"vpn-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "openvpn"), fmt.Sprintf("TLS Error: cannot locate HMAC in incoming packet from [AF_INET]%s:%d", c.src, 30000+c.i%30000))
			}},
			{"vpn-bruteforce", false, func(c lineCtx) string {
				return sl(c, pid(c, "ovpn-server"), fmt.Sprintf("%s:%d TLS Error: TLS handshake failed", c.src, 30000+c.i%30000))
			}},
		},
		benign: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "ovpn-server"), fmt.Sprintf("%s:%d VERIFY ERROR: depth=0, error=certificate has expired: CN=laptop", c.src, 40000+c.i%20000))
			},
		},
		noise: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "ovpn-server"), fmt.Sprintf("%s:%d Peer Connection Initiated with [AF_INET]%s:%d", c.src, 40000+c.i%20000, c.src, 40000+c.i%20000))
			},
			func(c lineCtx) string {
				return sl(c, pid(c, "ovpn-server"), fmt.Sprintf("laptop/%s:%d MULTI_sva: pool returned IPv4=10.8.0.6", c.src, 40000+c.i%20000))
			},
		},
		malformed: []func(c lineCtx) string{
			func(c lineCtx) string {
				return sl(c, pid(c, "ovpn-server"), "junk:port TLS Error: TLS handshake failed")
			},
		},
	},
	{
		name: "json",
		attacks: []format{
			{"web-401-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf(`{"ClientAddr":"%s:%d","ClientHost":"%s","DownstreamStatus":401,"RequestMethod":"GET","RequestPath":"/admin","RouterName":"web@docker","request_User-Agent":"Mozilla/5.0","time":"%s"}`, c.src, 30000+c.i%30000, c.src, rfcStamp(c.t))
			}},
			{"web-path-scan", false, func(c lineCtx) string {
				return fmt.Sprintf(`{"ClientHost":"%s","DownstreamStatus":404,"RequestMethod":"GET","RequestPath":"/probe/%d.php","time":"%s"}`, c.src, c.i, rfcStamp(c.t))
			}},
			{"wordpress-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf(`{"level":"info","ts":%d.%03d,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"%s","remote_port":"%d","client_ip":"%s","proto":"HTTP/1.1","method":"POST","host":"example.com","uri":"/wp-login.php","headers":{"User-Agent":["Mozilla/5.0"]}},"status":200}`, c.t.Unix(), c.t.Nanosecond()/1e6, c.src, 30000+c.i%30000, c.src)
			}},
			{"k8s-api-denied", false, func(c lineCtx) string {
				return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns%d/secrets","verb":"list","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"sourceIPs":["%s"],"userAgent":"curl/8.5.0","responseStatus":{"metadata":{},"status":"Failure","reason":"Forbidden","code":403},"requestReceivedTimestamp":"%s"}`, c.i%50, c.src, rfcStamp(c.t))
			}},
			{"aws-console-bruteforce", false, func(c lineCtx) string {
				return fmt.Sprintf(`{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","accountId":"123456789012","userName":"%s"},"eventTime":"%s","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"%s","userAgent":"Mozilla/5.0","errorMessage":"Failed authentication","requestParameters":null,"responseElements":{"ConsoleLogin":"Failure"}}`, c.user, c.t.Format(time.RFC3339), c.src)
			}},
		},
		benign: []func(c lineCtx) string{
			func(c lineCtx) string {
				return fmt.Sprintf(`{"eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","sourceIPAddress":"%s","eventTime":"%s","responseElements":{"ConsoleLogin":"Failure"}}`, c.src, c.t.Format(time.RFC3339))
			},
			func(c lineCtx) string {
				return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"dev"},"sourceIPs":["%s"],"responseStatus":{"code":403},"requestReceivedTimestamp":"%s"}`, c.src, rfcStamp(c.t))
			},
			func(c lineCtx) string {
				return fmt.Sprintf(`{"ClientHost":"%s","DownstreamStatus":401,"RequestMethod":"GET","RequestPath":"/admin","time":"%s"}`, c.src, rfcStamp(c.t))
			},
		},
		noise: []func(c lineCtx) string{
			func(c lineCtx) string {
				return fmt.Sprintf(`{"ClientHost":"%s","DownstreamStatus":200,"RequestMethod":"GET","RequestPath":"/","time":"%s"}`, c.src, rfcStamp(c.t))
			},
			func(c lineCtx) string {
				return fmt.Sprintf(`{"level":"info","ts":%d.5,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"%s","method":"GET","uri":"/index.html","headers":{"User-Agent":["Mozilla/5.0"]}},"status":200}`, c.t.Unix(), c.src)
			},
			func(c lineCtx) string {
				return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"dev"},"sourceIPs":["%s"],"responseStatus":{"code":200},"requestReceivedTimestamp":"%s"}`, c.src, rfcStamp(c.t))
			},
			func(c lineCtx) string {
				return fmt.Sprintf(`{"eventSource":"s3.amazonaws.com","eventName":"GetObject","sourceIPAddress":"%s","eventTime":"%s"}`, c.src, c.t.Format(time.RFC3339))
			},
			func(c lineCtx) string {
				return fmt.Sprintf(`{"eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","sourceIPAddress":"%s","eventTime":"%s","responseElements":{"ConsoleLogin":"Success"}}`, c.src, c.t.Format(time.RFC3339))
			},
		},
		malformed: []func(c lineCtx) string{
			func(c lineCtx) string {
				return fmt.Sprintf(`{"ClientHost":"%s","DownstreamStatus":401,"RequestPath":"/x"`, c.src)
			},
		},
	},
}

// mixTruth is the ground truth of a generated log.
type mixTruth struct {
	lines     int
	malformed int
	attackers map[string]string // indicator value -> the rule that must report it
	benign    map[string]bool
}

// writeMixedLog writes n lines of family f to path: one line in ten an
// attacker's (two active at a time, 25 lines each, a line every couple of
// seconds), one in twenty a benign source's failure (each benign source
// fails once or twice), one in two hundred malformed, the rest ordinary
// lines of benign sources.
func writeMixedLog(tb testing.TB, f family, fi int, path string, n int) mixTruth {
	tb.Helper()
	out, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(out)
	rng := rand.New(rand.NewPCG(uint64(fi)+1, 7))
	truth := mixTruth{lines: n, attackers: map[string]string{}, benign: map[string]bool{}}
	start := time.Date(2024, 11, 28, 0, 0, 0, 0, time.UTC)
	users := []string{"admin", "root", "test", "oracle", "info", "sales", "support", "guest", "user", "backup"}
	type att struct {
		src  string
		fmt  format
		left int
	}
	nextAtt, nextBenign := 0, 0
	newAttacker := func() att {
		k := nextAtt
		nextAtt++
		fm := f.attacks[k%len(f.attacks)]
		var src string
		switch {
		case fm.hosts && k%3 == 0:
			src = fmt.Sprintf("atk-%d.scanners.example.net", k)
		case k%5 == 4:
			src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xa0, byte(fi), 14: byte(k >> 8), 15: byte(k)}).String()
		default:
			src = netip.AddrFrom4([4]byte{198, 18, byte(fi*16 + k>>8), byte(k)}).String()
		}
		return att{src, fm, 25}
	}
	benignSrc := func() string {
		k := nextBenign
		nextBenign++
		if k%7 == 6 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xbe, byte(fi), 13: byte(k >> 16), 14: byte(k >> 8), 15: byte(k)}).String()
		}
		return netip.AddrFrom4([4]byte{10, byte(fi), byte(k >> 8), byte(k)}).String()
	}
	live := [2]att{newAttacker(), newAttacker()}
	var regulars []string // benign sources that write ordinary lines
	for range 200 {
		s := benignSrc()
		regulars = append(regulars, s)
		truth.benign[s] = true
	}
	var again []string // benign sources that will fail a second time, much later
	for i := range n {
		c := lineCtx{t: start.Add(time.Duration(i) * 100 * time.Millisecond), i: i, rng: rng, user: users[rng.IntN(len(users))]}
		var line string
		switch r := rng.IntN(200); {
		case r < 20:
			a := &live[rng.IntN(2)]
			c.src = a.src
			line = a.fmt.line(c)
			truth.attackers[strings.ToLower(a.src)] = a.fmt.rule
			if a.left--; a.left == 0 {
				*a = newAttacker()
			}
		case r < 30:
			if len(again) > 50 && rng.IntN(2) == 0 {
				c.src, again = again[0], again[1:]
			} else {
				c.src = benignSrc()
				truth.benign[c.src] = true
				if rng.IntN(3) == 0 {
					again = append(again, c.src)
				}
			}
			line = f.benign[rng.IntN(len(f.benign))](c)
		case r < 31:
			line = f.malformed[rng.IntN(len(f.malformed))](c)
			truth.malformed++
		default:
			c.src = regulars[rng.IntN(len(regulars))]
			line = f.noise[rng.IntN(len(f.noise))](c)
		}
		w.WriteString(line)
		w.WriteByte('\n')
	}
	// An attacker cut short by the end of the log may not have crossed
	// its rule: only those with most of their burst spent count.
	for _, a := range live {
		if a.left > 5 {
			delete(truth.attackers, strings.ToLower(a.src))
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
	return truth
}

// TestGeneratedFamilyLogs scores the built-in pack on a generated mixed
// log of each family: recall 1.00 (every attacker reported by its rule)
// and no false positive (no benign source reported by any rule), every
// malformed line counted.
func TestGeneratedFamilyLogs(t *testing.T) {
	for fi, f := range families {
		t.Run(f.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), f.name+".log")
			truth := writeMixedLog(t, f, fi, path, 20000)
			eng, err := NewRulesEngine(BuiltinRules(), EngineOptions{Now: func() time.Time { return time.Date(2024, 11, 28, 12, 0, 0, 0, time.UTC) }})
			if err != nil {
				t.Fatal(err)
			}
			found := map[string]map[string]bool{} // rule -> indicator values
			in, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			if _, err := ReadLines(in, 0, func(l []byte) {
				eng.Process(l, func(s intel.Sighting) {
					if err := s.Validate(); err != nil {
						t.Errorf("invalid sighting %+v: %v", s, err)
					}
					if found[s.Detector] == nil {
						found[s.Detector] = map[string]bool{}
					}
					found[s.Detector][s.Indicator.Value] = true
				})
			}); err != nil {
				t.Fatal(err)
			}
			// A rule that suppresses the attacker's (a fast guess seen by
			// the slow brute force rule as well) reports it instead.
			reported := func(rule, a string) bool {
				r, _ := BuiltinRules().Get(rule)
				return found[rule][a] || slices.ContainsFunc(r.SuppressedBy, func(s string) bool { return found[s][a] })
			}
			hit := 0
			for a, rule := range truth.attackers {
				if reported(rule, a) {
					hit++
				} else {
					t.Errorf("attacker %s not reported by %s", a, rule)
				}
			}
			fp := 0
			for rule, m := range found {
				for v := range m {
					if truth.benign[v] {
						fp++
						t.Errorf("benign %s reported by %s", v, rule)
					} else if _, ok := truth.attackers[v]; !ok && !strings.HasPrefix(v, "198.18.") && !strings.HasPrefix(v, "2001:db8:a0") && !strings.HasPrefix(v, "atk-") {
						fp++
						t.Errorf("unknown source %s reported by %s", v, rule)
					}
				}
			}
			st := eng.Stats()
			if st.Skipped != uint64(truth.malformed) {
				t.Errorf("malformed lines counted %d, written %d", st.Skipped, truth.malformed)
			}
			if len(truth.attackers) < 20 || len(truth.benign) < 500 {
				t.Fatalf("generator: %d attackers, %d benign", len(truth.attackers), len(truth.benign))
			}
			t.Logf("%s: %d lines, recall %d/%d = %.2f, %d false positives, %d benign sources, %d malformed counted, %d local",
				f.name, truth.lines, hit, len(truth.attackers), float64(hit)/float64(len(truth.attackers)), fp, len(truth.benign), st.Skipped, st.Local)
		})
	}
}
