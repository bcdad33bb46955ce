package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/meshward/meshward/store"
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

func tokenFrom(r store.TokenRecord) Token {
	return Token{ID: r.ID, Name: r.Name, Role: Role(r.Role), CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy}
}

func getTokens(s *Server, _ *call) (any, error) {
	recs, err := s.tokenStore.Tokens()
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(recs))
	for _, r := range recs {
		out = append(out, tokenFrom(r))
	}
	return out, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]*$`)

func postToken(s *Server, c *call) (any, error) {
	var req TokenRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	role, err := ParseRole(string(req.Role))
	if err != nil {
		return nil, err
	}
	c.detail = "role=" + string(role) + " name=" + req.Name
	if req.Name != "" && (len(req.Name) > maxNameLen || !validName.MatchString(req.Name)) {
		return nil, fmt.Errorf("%w: name %q: want 1 to %d letters, digits, '.', '_', '@' or '-'", ErrInvalid, req.Name, maxNameLen)
	}
	if req.Name == LocalAdminName {
		return nil, fmt.Errorf("%w: name %q is reserved", ErrInvalid, req.Name)
	}
	ct, err := s.createToken(req.Name, role, c.who.actor())
	if err != nil {
		return nil, err
	}
	c.target = ct.ID
	return ct, nil
}

// createToken makes and stores a new token; name "" means token-<id>.
func (s *Server) createToken(name string, role Role, by string) (CreatedToken, error) {
	for range 3 { // an ID collision is astronomically unlikely; retry anyway
		id, secret, err := newToken()
		if err != nil {
			return CreatedToken{}, err
		}
		n := name
		if n == "" {
			n = "token-" + id[:8]
		}
		rec := store.TokenRecord{ID: id, Name: n, Role: string(role), Hash: hashToken(id, secretOf(secret)),
			CreatedAt: s.now().UTC(), CreatedBy: by}
		err = s.tokenStore.CreateToken(rec)
		if errors.Is(err, store.ErrExists) {
			continue
		}
		if err != nil {
			return CreatedToken{}, fmt.Errorf("create token: %w", err)
		}
		return CreatedToken{Token: tokenFrom(rec), Secret: secret}, nil
	}
	return CreatedToken{}, errors.New("create token: could not find a free ID")
}

// secretOf returns the secret part of a full bearer token made by
// newToken.
func secretOf(bearer string) string {
	_, secret, _ := splitToken(bearer)
	return secret
}

func deleteToken(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	if err := s.tokenStore.DeleteToken(id); err != nil {
		return nil, fmt.Errorf("revoke token %s: %w", id, err)
	}
	if n := s.sessions.endToken(id); n > 0 {
		c.detail = fmt.Sprintf("%d dashboard sessions ended", n)
	}
	return map[string]string{"revoked": id}, nil
}
