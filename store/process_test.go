package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestProcessFamilies(t *testing.T) {
	s, err := Open(DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if err := s.PutProcess("record", fmt.Sprintf("k%d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// A family whose name is a prefix of another's is a family of its own.
	if err := s.PutProcess("rec", "k0", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutProcess("record", "k1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.ScanProcess("record", func(k string, v []byte) error { got = append(got, k+"="+string(v)); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "k0=0 k1=one k2=2" {
		t.Errorf("scan %v", got)
	}
	if err := s.InsertProcess("record", "k2", []byte("x")); !errors.Is(err, ErrExists) {
		t.Errorf("insert over a key: %v, want ErrExists", err)
	}
	if v, err := s.GetProcess("record", "k2"); err != nil || string(v) != "2" {
		t.Errorf("get %q %v, want the first value kept", v, err)
	}
	if _, err := s.GetProcess("record", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get missing: %v", err)
	}
	stop := errors.New("stop")
	if err := s.ScanProcess("record", func(string, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("scan error %v, want the callback's", err)
	}
	n, err := s.PruneProcess("record", func(v []byte) bool { return string(v) != "one" })
	if err != nil || n != 2 {
		t.Errorf("pruned %d %v, want 2", n, err)
	}
	if _, err := s.GetProcess("rec", "k0"); err != nil {
		t.Errorf("prune reached another family: %v", err)
	}
	if err := s.PutProcessMany("many", []string{"b", "a", "b"}, [][]byte{[]byte("1"), []byte("2"), []byte("3")}); err != nil {
		t.Fatal(err)
	}
	got = nil
	if err := s.ScanProcess("many", func(k string, v []byte) error { got = append(got, k+"="+string(v)); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "a=2 b=3" {
		t.Errorf("put many: %v, want the last value of each key", got)
	}
	if err := s.PutProcessMany("many", []string{"a", ""}, [][]byte{nil, nil}); err == nil {
		t.Error("an empty key accepted in a batch")
	}
	for _, bad := range []struct{ fam, key string }{{"", "k"}, {strings.Repeat("f", 33), "k"}, {"f", ""}, {"f", strings.Repeat("k", MaxProcessKeyLen+1)}} {
		if err := s.PutProcess(bad.fam, bad.key, nil); err == nil {
			t.Errorf("put family %d bytes key %d bytes accepted", len(bad.fam), len(bad.key))
		}
	}
}
