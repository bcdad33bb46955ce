package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
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
	key, _, err := s.key.load()
	if err != nil {
		return admin.OperatorResult{}, err
	}
	st, err := c.Operator(ctx)
	if err != nil {
		return admin.OperatorResult{}, err
	}
	if st.Mesh == "" {
		return admin.OperatorResult{}, fmt.Errorf("the node at %s is not in a mesh yet; try again once it has joined or founded one", c.Target())
	}
	nonce := make([]byte, 16)
	if _, err := io.ReadFull(s.deps.rand, nonce); err != nil {
		return admin.OperatorResult{}, fmt.Errorf("make a nonce: %w", err)
	}
	now := s.deps.now().UTC()
	cmd.Header = intel.OperatorHeader{Mesh: st.Mesh, Nonce: hex.EncodeToString(nonce), Issued: now, Expires: now.Add(operatorCommandLife)}
	signed, err := intel.SignOperatorCommand(key, cmd)
	if err != nil {
		return admin.OperatorResult{}, err
	}
	return c.SubmitOperator(ctx, signed)
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
