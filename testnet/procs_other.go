//go:build !linux

package testnet

import "os/exec"

// setParentDeathSignal does nothing outside Linux: a worker still exits
// when its input ends, which it does when the coordinator dies.
func setParentDeathSignal(*exec.Cmd) {}
