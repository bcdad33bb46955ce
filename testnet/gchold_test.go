package testnet

import (
	"runtime/debug"
	"testing"
)

// holdGC turns the collector off (GOGC -1) and releaseGC restores the
// setting it found, once however often either is called.
func TestHoldGC(t *testing.T) {
	before := debug.SetGCPercent(150)
	defer debug.SetGCPercent(before)
	holdGC()
	holdGC()
	if p := debug.SetGCPercent(-1); p != -1 || !gcHeld() {
		t.Fatalf("held: GOGC %d, held %v; want -1 and true", p, gcHeld())
	}
	releaseGC()
	releaseGC()
	if p := debug.SetGCPercent(150); p != 150 || gcHeld() {
		t.Fatalf("released: GOGC %d, held %v; want the 150 it found and false", p, gcHeld())
	}
}

// gcHeld reports whether holdGC holds the collector.
func gcHeld() bool {
	gcHold.Lock()
	defer gcHold.Unlock()
	return gcHold.held
}
