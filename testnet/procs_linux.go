package testnet

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel send the worker SIGTERM when the
// coordinator's thread that started it dies, so that a worker never
// outlives a coordinator killed before it could close its input.
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
}
