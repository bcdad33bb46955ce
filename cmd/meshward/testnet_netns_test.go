package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestTestnetNetnsFlags: --netns refuses what namespace mode cannot do,
// naming the flag, before anything starts (no root needed to be told).
func TestTestnetNetnsFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"testnet", "--netns", "--processes", "2"}, "--processes with --netns"},
		{[]string{"testnet", "--netns", "-v"}, "--verbose with --netns"},
		{[]string{"testnet", "--netns", "-n", "3", "--attacked", "4"}, "--attacked 4"},
		{[]string{"testnet", "--netns", "--attacker", "nope"}, `--attacker "nope"`},
		{[]string{"testnet", "--netns", "-o", "yaml"}, `-o "yaml"`},
		{[]string{"testnet", "run", "--netns", "--size", "-1", "x.yaml"}, "--size -1"},
		{[]string{"testnet", "run", "--netns", "--profile", "sim", "../../testnet/scenarios/netns/wan-latency.yaml"}, "not supported in namespace mode"},
		{[]string{"testnet", "run", "--netns", "no-such-file.yaml"}, "no-such-file.yaml"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			cmd := newRootCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v: got %v, want an error naming %s", tc.args, err, tc.want)
			}
		})
	}
}
