package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/meshward/meshward/internal/atomicfile"
)

// The baselines of the anomaly rules (detectors/anomaly.go) are learnt
// over hours; a restart must not throw them away. The node keeps them in
// data_dir/anomaly.json: read at start, written every anomalySaveEvery
// and when the node stops, carried from one engine to the next on a
// reload.

const (
	anomalyFile      = "anomaly.json"
	anomalySaveEvery = time.Minute
)

// anomalyCounters count the saving and loading of the baselines.
type anomalyCounters struct {
	saved, saveErrors, restored, skipped, loadErrors atomic.Uint64
}

// restoreAnomalies loads the saved baselines into the engine in force. A
// file that cannot be read whole is logged, counted and moved aside
// (anomaly.json.bad): the rules learn again rather than the node failing
// to start.
func (n *Node) restoreAnomalies(d *Detectors) {
	path := filepath.Join(n.deps.Config.DataDir, anomalyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		var restored, skipped int
		restored, skipped, err = d.engine.Load().RestoreAnomalies(data)
		if err == nil {
			d.anomaly.restored.Add(uint64(restored))
			d.anomaly.skipped.Add(uint64(skipped))
			n.log.Info("anomaly baselines restored", "keys", restored, "skipped", skipped)
			return
		}
	}
	d.anomaly.loadErrors.Add(1)
	n.log.Warn("anomaly baselines not restored; the anomaly rules learn again", "file", path, "err", err)
	_ = os.Rename(path, path+".bad")
}

// saveAnomalies writes the baselines of the engine in force to
// data_dir/anomaly.json, whole or not at all.
func (n *Node) saveAnomalies(d *Detectors) error {
	data, err := d.engine.Load().AnomalyState()
	if err != nil || data == nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(n.deps.Config.DataDir, anomalyFile), data, 0o600); err != nil {
		return fmt.Errorf("save anomaly baselines: %w", err)
	}
	d.anomaly.saved.Add(1)
	return nil
}

// keepAnomalies restores the baselines, then saves them every
// anomalySaveEvery and once more when ctx ends.
func (n *Node) keepAnomalies(d *Detectors) {
	n.restoreAnomalies(d)
	n.group.Go(func(ctx context.Context) {
		t := time.NewTicker(anomalySaveEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				if err := n.saveAnomalies(d); err != nil {
					d.anomaly.saveErrors.Add(1)
					n.log.Warn("anomaly baselines not saved", "err", err)
				}
				return
			case <-t.C:
				if err := n.saveAnomalies(d); err != nil {
					d.anomaly.saveErrors.Add(1)
					n.log.Warn("anomaly baselines not saved", "err", err)
				}
			}
		}
	})
}
