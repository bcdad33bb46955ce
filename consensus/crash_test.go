package consensus

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// Environment of the crash helper process.
const (
	crashDirEnv = "MESHWARD_CONSENSUS_CRASH_DIR"
	crashKeyEnv = "MESHWARD_CONSENSUS_CRASH_KEY"
	ackPrefix   = "ACK "
)

// openDurable starts a bootstrapping single-voter participant on the real
// Badger store and file snapshots in dir. The returned stop closes
// consensus, then the store.
func openDurable(tb testing.TB, dir string, k crypto.PrivKey, log *slog.Logger) (*Consensus, func()) {
	tb.Helper()
	st, err := store.Open(store.DefaultOptions(filepath.Join(dir, "store")))
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(dir, "raft"), 2, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	h := newTestHost(tb, k, nil)
	cfg := Config{LocalID: h.ID().String(), Site: "crash", Bootstrap: true, Logger: log,
		BootstrapOperators: []string{bootstrapOperatorText(testOperatorKey)}}
	fastTiming(&cfg)
	rs := st.RaftStore()
	c, err := New(context.Background(), h, rs, rs, snaps, cfg)
	if err != nil {
		tb.Fatalf("start consensus: %v", err)
	}
	return c, func() {
		_ = c.Close()
		_ = h.Close()
		_ = st.Close()
	}
}

// TestHelperProcess is the child of TestCrashKeepsCommittedEntries: it
// commits policies from several goroutines, printing each ID once Propose
// returned nil, until it is killed. It does nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashKeepsCommittedEntries")
	}
	raw, err := hex.DecodeString(os.Getenv(crashKeyEnv))
	if err != nil {
		t.Fatal(err)
	}
	k, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := openDurable(t, dir, k, slog.New(slog.DiscardHandler))
	waitFor(t, 30*time.Second, "leadership", func() bool { return c.IsLeader() && c.IsMember(c.cfg.LocalID) })
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				ind, _ := intel.NewIndicator(intel.IPv4, fmt.Sprintf("10.%d.%d.%d", g, (i>>8)&255, i&255))
				p := intel.NewPolicy(intel.ActionBlock, ind, "crash", c.cfg.LocalID, time.Now(), 24*time.Hour)
				s := signOp(t, testOperatorKey, c.MeshID(), time.Now().UTC(), intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: 86400})
				if err := c.ProposeOperator(context.Background(), s); err != nil {
					fmt.Fprintf(os.Stderr, "propose: %v\n", err)
					return
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "%s%s\n", ackPrefix, p.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Fatal("proposers stopped before the kill")
}

func TestCrashKeepsCommittedEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	k := newKey(t)
	raw, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashKeyEnv+"="+hex.EncodeToString(raw))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	// Read acknowledgements; kill the child with SIGKILL while it is still
	// writing, then keep every acknowledgement it managed to print.
	const enough = 300
	var acked []string
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(90*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, ackPrefix); ok {
			acked = append(acked, id)
		}
		if len(acked) == enough && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("child exited after %d acknowledgements, before the kill; stderr:\n%s", len(acked), stderr.String())
	}
	t.Logf("child killed after %d acknowledged commits", len(acked))

	// Restart in this process from the same directory and key.
	c, stop := openDurable(t, dir, k, testLogger(t))
	defer stop()
	waitFor(t, 30*time.Second, "the restarted node to lead", c.IsLeader)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := c.ReadPolicies(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range got {
		have[p.ID] = true
	}
	missing := 0
	for _, id := range acked {
		if !have[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged policies lost in the crash (%d held)", missing, len(acked), len(got))
	}
	if !c.IsMember(c.cfg.LocalID) {
		t.Error("restarted node lost its roster entry")
	}
}
