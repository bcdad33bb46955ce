//go:build !linux

package testenv

import "errors"

func openNS(string) (int, error) { return -1, errors.New("network namespaces need Linux") }

func closeFD(int) {}
