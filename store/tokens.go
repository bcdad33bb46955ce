package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ErrExists is returned when a record that must be new is already stored.
var ErrExists = errors.New("already exists")

// Admin API tokens live under their own prefix:
//
//	tok/ <token id> -> TokenRecord (JSON)
//
// The store keeps what it is given: callers hash the secret before they
// store a record, and compare hashes themselves. The secret never reaches
// the store.
var prefixToken = []byte("tok/")

// maxTokenIDLen bounds a token ID.
const maxTokenIDLen = 64

func tokenKey(id string) []byte { return join(prefixToken, []byte(id)) }

// TokenRecord is one admin API token as stored: its ID, the role it grants
// and a hash of its secret.
type TokenRecord struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Hash      string    `json:"hash"` // hex; how it is computed is the caller's business
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

func checkTokenID(id string) error {
	if id == "" || len(id) > maxTokenIDLen {
		return fmt.Errorf("token id must be 1 to %d bytes, got %d", maxTokenIDLen, len(id))
	}
	return nil
}

// CreateToken stores a new token record. It returns ErrExists, and stores
// nothing, if a token with that ID is already stored.
func (s *Store) CreateToken(t TokenRecord) error {
	if err := checkTokenID(t.ID); err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	v, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return wrap("create token "+t.ID, s.insert(tokenKey(t.ID), v))
}

// Token returns the token record with the given ID, or ErrNotFound.
func (s *Store) Token(id string) (TokenRecord, error) {
	if err := checkTokenID(id); err != nil {
		return TokenRecord{}, fmt.Errorf("read token: %w", ErrNotFound)
	}
	var t TokenRecord
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(tokenKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &t) })
	})
	if err != nil {
		return TokenRecord{}, wrap("read token "+id, err)
	}
	return t, nil
}

// Tokens returns every stored token record, ordered by ID.
func (s *Store) Tokens() ([]TokenRecord, error) {
	return list(s, "tokens", prefixToken, false, 0, jsonValue[TokenRecord]("token"))
}

// DeleteToken removes a token record; it returns ErrNotFound if none is
// stored under id.
func (s *Store) DeleteToken(id string) error {
	if err := checkTokenID(id); err != nil {
		return fmt.Errorf("delete token: %w", ErrNotFound)
	}
	return wrap("delete token "+id, s.remove(tokenKey(id)))
}
