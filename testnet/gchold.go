package testnet

import (
	"runtime/debug"
	"sync"
	"time"
)

// From the attack's first log line until every node enforces, the brute
// force holds the garbage collector of every process of the mesh off
// (Report.GCHeld). A worker's heap holds its hundreds of nodes' (some
// 4 GB for 500 of them): one collection of it takes 5 to 10 s of wall
// time and as many CPU-s of the two cores, and one that began during an
// attack held that worker's nodes back by seconds (commit → enforced on
// an edge p99 2.8 s in a 1,000-node run whose other worker's edges all
// enforced within 1.04 s), where a site's own heap of a few MB collects
// in milliseconds. A collection already running when the attack starts
// is not stopped; the settling before it (settle.go) most likely waits
// it out, since its mark workers keep the cores busy (not measured). The
// window allocates some hundreds of MB at most; a
// hold ends by itself after gcHoldMax, so that a mesh that does not
// converge does not grow its heap until the run times out.
var gcHold struct {
	sync.Mutex
	held    bool
	percent int         // GOGC before the hold
	timer   *time.Timer // ends the hold after gcHoldMax
}

// gcHoldMax bounds a hold: a thousand nodes enforce in seconds.
const gcHoldMax = 30 * time.Second

// holdGC stops new garbage collections in this process until releaseGC,
// or gcHoldMax.
func holdGC() {
	gcHold.Lock()
	defer gcHold.Unlock()
	if !gcHold.held {
		gcHold.percent, gcHold.held = debug.SetGCPercent(-1), true
		gcHold.timer = time.AfterFunc(gcHoldMax, releaseGC)
	}
}

// releaseGC restores the collector holdGC stopped; without a hold it does
// nothing.
func releaseGC() {
	gcHold.Lock()
	defer gcHold.Unlock()
	if gcHold.held {
		gcHold.timer.Stop()
		debug.SetGCPercent(gcHold.percent)
		gcHold.held = false
	}
}
