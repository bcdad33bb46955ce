package testenv

import "golang.org/x/sys/unix"

func openNS(name string) (int, error) {
	return unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

func closeFD(fd int) { _ = unix.Close(fd) }
