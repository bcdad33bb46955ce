package testnet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/meshward/meshward/intel"
)

// Operator is the mesh's operator: an admin key made in memory when the
// mesh starts and registered by the founding node (its
// consensus.bootstrap_operators), which signs the operator commands the
// scenarios need.
type Operator struct {
	m    *Mesh
	priv ed25519.PrivateKey
}

// newOperatorKey makes the mesh's operator key.
func newOperatorKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testnet: operator key: %w", err)
	}
	return priv, nil
}

// operatorKeyText is the key's bootstrap_operators entry.
func operatorKeyText(priv ed25519.PrivateKey) string {
	return intel.FormatOperatorPublicKey(priv.Public().(ed25519.PublicKey)) + " testnet"
}

// Operator returns the mesh's operator.
func (m *Mesh) Operator() *Operator { return &Operator{m: m, priv: m.operator} }

// PublicKey is the operator's public key.
func (o *Operator) PublicKey() ed25519.PublicKey { return o.priv.Public().(ed25519.PublicKey) }

// Sign signs cmd for the mesh (its header: the mesh's ID, a fresh nonce,
// valid for ten minutes from now).
func (o *Operator) Sign(cmd intel.OperatorCommand) (intel.OperatorSigned, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return intel.OperatorSigned{}, fmt.Errorf("testnet: nonce: %w", err)
	}
	mesh := o.m.Nodes[0].Consensus().MeshID()
	if mesh == "" {
		return intel.OperatorSigned{}, fmt.Errorf("testnet: the mesh is not initialised yet")
	}
	now := time.Now().UTC()
	cmd.Header = intel.OperatorHeader{Mesh: mesh, Nonce: hex.EncodeToString(nonce), Issued: now, Expires: now.Add(10 * time.Minute)}
	return intel.SignOperatorCommand(o.priv, cmd)
}

// Submit signs cmd and commits it through node i.
func (o *Operator) Submit(ctx context.Context, i int, cmd intel.OperatorCommand) error {
	s, err := o.Sign(cmd)
	if err != nil {
		return err
	}
	if err := o.m.Nodes[i].Consensus().ProposeOperator(ctx, s); err != nil {
		return fmt.Errorf("testnet: %s through node %d: %w", cmd.Op, i, err)
	}
	return nil
}

// Block commits an operator's block of ind for ttl through node i.
func (o *Operator) Block(ctx context.Context, i int, ind intel.Indicator, ttl time.Duration, reason string) error {
	return o.Submit(ctx, i, intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: int64(ttl / time.Second), Reason: reason})
}
