//go:build linux

package store

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// loopDisk is an ext4 file system on a loop device over an image file. Its
// crash copies stand for the disk after a power loss: the image holds only
// what the file system wrote to the device, so everything still in the page
// cache (written but never synced) is lost.
type loopDisk struct {
	t   *testing.T
	dir string
}

// newLoopDisk skips t where the kernel or the process cannot attach and
// mount loop devices: a missing kernel feature is not a failure.
func newLoopDisk(t *testing.T) *loopDisk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("power-loss test: needs root to attach a loop device and mount it")
	}
	for _, c := range []string{"losetup", "mkfs.ext4", "mount", "umount", "cp"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("power-loss test: needs the %s command", c)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("power-loss test: the kernel offers no loop devices: %v", err)
	}
	return &loopDisk{t: t, dir: t.TempDir()}
}

func (d *loopDisk) run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// mount attaches img and mounts it on a new directory, undone when the
// test ends; it skips the test when attaching or mounting is refused.
func (d *loopDisk) mount(img string) string {
	d.t.Helper()
	dev, err := d.run("losetup", "--find", "--show", img)
	if err != nil {
		d.t.Skipf("power-loss test: cannot attach a loop device: %v", err)
	}
	d.t.Cleanup(func() { _, _ = d.run("losetup", "--detach", dev) })
	mnt, err := os.MkdirTemp(d.dir, "mnt")
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.run("mount", "-t", "ext4", dev, mnt); err != nil {
		d.t.Skipf("power-loss test: cannot mount a loop device: %v", err)
	}
	d.t.Cleanup(func() {
		if _, err := d.run("umount", mnt); err != nil {
			_, _ = d.run("umount", "--lazy", mnt)
		}
	})
	return mnt
}

// format creates an image with an empty ext4 file system and mounts it.
func (d *loopDisk) format() (img, mnt string) {
	d.t.Helper()
	img = filepath.Join(d.dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.run("mkfs.ext4", "-q", "-F", img); err != nil {
		d.t.Fatal(err)
	}
	return img, d.mount(img)
}

// powerLoss copies img as the device holds it now, without syncing the
// file system mounted on it, and mounts the copy (replaying its journal).
func (d *loopDisk) powerLoss(img string) string {
	d.t.Helper()
	f, err := os.CreateTemp(d.dir, "lost*.img")
	if err != nil {
		d.t.Fatal(err)
	}
	lost := f.Name()
	_ = f.Close()
	if _, err := d.run("cp", "--sparse=always", img, lost); err != nil {
		d.t.Fatal(err)
	}
	return d.mount(lost)
}

// TestPowerLossKeepsAcknowledgedWrites writes envelopes, sequence numbers,
// raft log entries and stable values to a store on its own disk, cuts the
// power (drops every write not yet synced to the device), opens the store
// from what the device held, and finds everything that was acknowledged.
// It fails when the store is opened without synced writes.
func TestPowerLossKeepsAcknowledgedWrites(t *testing.T) {
	disk := newLoopDisk(t)
	img, mnt := disk.format()

	opts := DefaultOptions(filepath.Join(mnt, "store"))
	opts.MemTableSize = minMemTableSize
	opts.GCInterval = -1
	s := openStore(t, opts)

	k := newKey(t)
	ind := mustIndicator(t, "203.0.113.7")
	const n = 50
	var envs []*intel.Envelope
	for i := range n {
		env := sighting(t, k, uint64(i+1), ind, t0)
		if added, err := s.PutEnvelope(env, t0); err != nil || !added {
			t.Fatalf("PutEnvelope %d: %v, %v", i+1, added, err)
		}
		envs = append(envs, env)
	}
	var seq uint64
	for range 3 {
		var err error
		if seq, err = s.NextSeq(); err != nil {
			t.Fatal(err)
		}
	}
	r := s.RaftStore()
	var logs []*raft.Log
	for i := range n {
		l := &raft.Log{Index: uint64(i + 1), Term: 3, Data: []byte(fmt.Sprint("entry ", i)), AppendedAt: t0}
		if err := r.StoreLog(l); err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	if err := r.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := r.Set([]byte("LastVoteCand"), []byte("node-b")); err != nil {
		t.Fatal(err)
	}

	after := DefaultOptions(filepath.Join(disk.powerLoss(img), "store"))
	after.MemTableSize = minMemTableSize
	after.GCInterval = -1
	got := openStore(t, after)
	for _, env := range envs {
		raw, err := got.GetEnvelope(nodeID(k), env.Seq)
		if err != nil || !bytes.Equal(raw, env.Raw) {
			t.Fatalf("envelope %d lost in the power loss: %v", env.Seq, err)
		}
	}
	if recs, err := got.SightingsFor(ind, t0); err != nil || len(recs) != n {
		t.Fatalf("%d sightings after the power loss, want %d: %v", len(recs), n, err)
	}
	if next, err := got.NextSeq(); err != nil || next != seq+1 {
		t.Fatalf("NextSeq after the power loss = %d, %v; want %d (a sequence number handed out twice)", next, err, seq+1)
	}
	gr := got.RaftStore()
	if last, err := gr.LastIndex(); err != nil || last != n {
		t.Fatalf("raft LastIndex after the power loss = %d, %v; want %d", last, err, n)
	}
	for _, want := range logs {
		var l raft.Log
		if err := gr.GetLog(want.Index, &l); err != nil {
			t.Fatalf("raft log %d lost in the power loss: %v", want.Index, err)
		}
		assertLogEqual(t, &l, want)
	}
	if v, err := gr.GetUint64([]byte("CurrentTerm")); err != nil || v != 3 {
		t.Fatalf("CurrentTerm after the power loss = %d, %v", v, err)
	}
	if v, err := gr.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-b" {
		t.Fatalf("LastVoteCand after the power loss = %q, %v", v, err)
	}
}
