package testenv

import "testing"

func TestRequiredReadsTheEnvironment(t *testing.T) {
	t.Setenv(RequireEnv, "1")
	if !Required() {
		t.Error("Required() = false with the variable set to 1")
	}
	t.Setenv(RequireEnv, "")
	if Required() {
		t.Error("Required() = true with the variable empty")
	}
}
