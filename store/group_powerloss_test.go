//go:build linux

package store

import (
	"bytes"
	"path/filepath"
	"sync"
	"testing"

	"github.com/meshward/meshward/intel"
)

// TestPowerLossKeepsGroupCommits has many goroutines store envelopes at
// once, so that they share commits, and cuts the power twice: once while
// they are still writing, once after the last call returned. Every
// envelope whose PutEnvelope had returned before the cut is on the disk
// the store is opened from afterwards.
func TestPowerLossKeepsGroupCommits(t *testing.T) {
	disk := newLoopDisk(t)
	img, mnt := disk.format()
	opts := DefaultOptions(filepath.Join(mnt, "store"))
	opts.MemTableSize = minMemTableSize
	opts.GCInterval = -1
	s := openStore(t, opts)

	const workers, each = 16, 60
	ind := mustIndicator(t, "203.0.113.60")
	envs := make([][]*intel.Envelope, workers)
	for w := range envs {
		k := newKey(t)
		for i := range each {
			envs[w] = append(envs[w], sighting(t, k, uint64(i+1), ind, t0))
		}
	}
	var mu sync.Mutex
	var acked []*intel.Envelope
	halfway := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, env := range envs[w] {
				if added, err := s.PutEnvelope(env, t0); err != nil || !added {
					t.Errorf("PutEnvelope %s/%d: %v, %v", env.OriginID(), env.Seq, added, err)
					return
				}
				mu.Lock()
				acked = append(acked, env)
				if len(acked) == workers*each/2 {
					close(halfway)
				}
				mu.Unlock()
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-halfway:
	case <-finished: // a writer failed
		return
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	during := disk.powerLoss(img)
	<-finished
	if t.Failed() {
		return
	}
	after := disk.powerLoss(img)

	check := func(what, mnt string, want []*intel.Envelope) {
		t.Helper()
		o := DefaultOptions(filepath.Join(mnt, "store"))
		o.MemTableSize = minMemTableSize
		o.GCInterval = -1
		got := openStore(t, o)
		for _, env := range want {
			raw, err := got.GetEnvelope(env.OriginID(), env.Seq)
			if err != nil || !bytes.Equal(raw, env.Raw) {
				t.Fatalf("power loss %s: envelope %s/%d acknowledged before it, lost: %v", what, env.OriginID(), env.Seq, err)
			}
		}
		recs, err := got.SightingsFor(ind, t0)
		if err != nil || len(recs) < len(want) {
			t.Fatalf("power loss %s: %d sightings indexed, %d acknowledged: %v", what, len(recs), len(want), err)
		}
		hw, err := got.HighWater()
		if err != nil {
			t.Fatal(err)
		}
		for _, env := range want {
			if hw[env.OriginID()] < env.Seq {
				t.Fatalf("power loss %s: high-water mark of %s is %d, below acknowledged %d", what, env.OriginID(), hw[env.OriginID()], env.Seq)
			}
		}
	}
	check("while writing", during, acked[:before])
	check("after the last write", after, acked)
	if s.group.commits.Load() >= uint64(len(acked)) {
		t.Logf("%d commits for %d envelopes: no commit was shared", s.group.commits.Load(), len(acked))
	}
}
