package main

import (
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasShortAndExample walks the whole command tree of the
// meshward binary and fails for each runnable command without a Short
// description or an Example.
func TestEveryCommandHasShortAndExample(t *testing.T) {
	root := newRootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	seen := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, s := range c.Commands() {
			walk(s)
		}
		// cobra's own help and completion commands are not ours to
		// document; the root only prints help.
		if c == root || !c.Runnable() || cobraBuiltin(c) {
			return
		}
		seen++
		if c.Short == "" {
			t.Errorf("%q has no Short description", c.CommandPath())
		}
		if c.Example == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
	}
	walk(root)
	if seen < 20 {
		t.Fatalf("walked %d commands; the tree is not what newRootCmd builds", seen)
	}
}

// cobraBuiltin reports whether c is cobra's help or completion command, or
// below it.
func cobraBuiltin(c *cobra.Command) bool {
	for ; c.HasParent(); c = c.Parent() {
		if c.Parent() == c.Root() && (c.Name() == "help" || c.Name() == "completion") {
			return true
		}
	}
	return false
}
