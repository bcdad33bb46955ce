package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

// operatorCommandLife is how long a signed command may wait to be
// committed (intel.MaxOperatorCommandLife bounds it).
const operatorCommandLife = 5 * time.Minute

// cliDeps are what the admin commands take from the world beyond the
// node: the clock, randomness and join token secrets. Tests fix them.
type cliDeps struct {
	now          func() time.Time
	rand         io.Reader
	newJoinToken func() (secret string, pub ed25519.PublicKey, err error)
}

func defaultCLIDeps() cliDeps {
	return cliDeps{now: time.Now, rand: rand.Reader, newJoinToken: intel.NewJoinToken}
}

// signer signs operator commands with the operator key in use and submits
// them through a node's admin API.
type signer struct {
	deps cliDeps
	key  operatorFlags
}

// submit loads the operator key, asks the node for the mesh ID, fills c's
// header (a random nonce, issued now, expiring in five minutes), signs c
// and commits it.
func (s *signer) submit(ctx context.Context, c *admin.Client, cmd intel.OperatorCommand) (admin.OperatorResult, error) {
	ss, err := s.session(ctx, c)
	if err != nil {
		return admin.OperatorResult{}, err
	}
	signed, err := ss.sign(cmd)
	if err != nil {
		return admin.OperatorResult{}, err
	}
	return c.SubmitOperator(ctx, signed)
}

// signSession signs commands for one mesh with one key; it is safe for
// concurrent use.
type signSession struct {
	deps cliDeps
	key  ed25519.PrivateKey
	mesh string
	mu   sync.Mutex // guards deps.rand
}

// session loads the operator key and asks the node for the mesh ID.
func (s *signer) session(ctx context.Context, c *admin.Client) (*signSession, error) {
	key, _, err := s.key.load()
	if err != nil {
		return nil, err
	}
	st, err := c.Operator(ctx)
	if err != nil {
		return nil, err
	}
	if st.Mesh == "" {
		return nil, fmt.Errorf("the node at %s is not in a mesh yet; try again once it has joined or founded one", c.Target())
	}
	return &signSession{deps: s.deps, key: key, mesh: st.Mesh}, nil
}

// sign fills cmd's header (a random nonce, issued now, expiring in five
// minutes) and signs it.
func (ss *signSession) sign(cmd intel.OperatorCommand) (intel.OperatorSigned, error) {
	nonce := make([]byte, 16)
	ss.mu.Lock()
	_, err := io.ReadFull(ss.deps.rand, nonce)
	now := ss.deps.now().UTC()
	ss.mu.Unlock()
	if err != nil {
		return intel.OperatorSigned{}, fmt.Errorf("make a nonce: %w", err)
	}
	cmd.Header = intel.OperatorHeader{Mesh: ss.mesh, Nonce: hex.EncodeToString(nonce), Issued: now, Expires: now.Add(operatorCommandLife)}
	return intel.SignOperatorCommand(ss.key, cmd)
}

// signedCmd returns the RunE of a verb that signs the command build makes
// and prints the result with print (printOperatorResult when nil).
func signedCmd(f *clientFlags, s *signer, build func(cmd *cobra.Command, args []string) (intel.OperatorCommand, error),
	print func(io.Writer, admin.OperatorResult)) func(*cobra.Command, []string) error {
	if print == nil {
		print = printOperatorResult
	}
	return func(cmd *cobra.Command, args []string) error {
		oc, err := build(cmd, args)
		if err != nil {
			return err
		}
		return run(cmd, f, func(c *admin.Client) (admin.OperatorResult, error) { return s.submit(cmd.Context(), c, oc) }, print)
	}
}

// printOperatorResult prints what a committed command did: the policy a
// block or allow made, else one line.
func printOperatorResult(w io.Writer, r admin.OperatorResult) {
	if r.Policy != nil {
		printPolicy(w, *r.Policy)
		fmt.Fprintf(w, "Signed by:\t%s\n", r.KeyID)
		return
	}
	target := ""
	if r.Target != "" {
		target = " " + r.Target
	}
	fmt.Fprintf(w, "committed %s%s, signed by %s\n", r.Op, target, r.KeyID)
}

// seconds converts a duration flag to the whole seconds a command carries.
func seconds(flag string, d time.Duration) (int64, error) {
	if d < 0 {
		return 0, fmt.Errorf("--%s %s: want a duration of zero or more", flag, d)
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("--%s %s: want whole seconds", flag, d)
	}
	return int64(d / time.Second), nil
}
