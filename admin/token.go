package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Role is what a token may do.
type Role string

// Roles, weakest first. Each may do everything the ones before it may.
const (
	RoleViewer    Role = "viewer"
	RoleResponder Role = "responder"
	RoleAdmin     Role = "admin"
)

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleResponder:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// Allows reports whether a token with role r may do what needs role need.
func (r Role) Allows(need Role) bool { return r.Valid() && r.rank() >= need.rank() }

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if !r.Valid() {
		return "", fmt.Errorf("%w: role %q (want viewer, responder or admin)", ErrInvalid, s)
	}
	return r, nil
}

// Token format: "mwt_" <16 hex digits of ID> "_" <43 base64url chars of a
// 32-byte secret>.
const (
	tokenPrefix = "mwt_"
	idBytes     = 8
	secretBytes = 32
	hashDomain  = "meshward admin token v1\x00"
)

var errMalformedToken = errors.New("malformed token")

// newToken returns a fresh token ID and its full bearer string.
func newToken() (id, bearer string, err error) {
	b := make([]byte, idBytes+secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate token: %w", err)
	}
	id = hex.EncodeToString(b[:idBytes])
	return id, tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(b[idBytes:]), nil
}

// splitToken returns the ID and secret of a bearer string.
func splitToken(bearer string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(bearer, tokenPrefix)
	if !ok {
		return "", "", errMalformedToken
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 2*idBytes || len(secret) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return "", "", errMalformedToken
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", "", errMalformedToken
	}
	return id, secret, nil
}

// hashToken is what the store keeps of a token: SHA-256 over a domain
// string, the ID and the secret, in hex.
func hashToken(id, secret string) string {
	h := sha256.New()
	h.Write([]byte(hashDomain))
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	return hex.EncodeToString(h.Sum(nil))
}

// hashMatches compares a stored hash with the hash of a presented secret
// in constant time.
func hashMatches(stored, id, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(stored), []byte(hashToken(id, secret))) == 1
}
