package feeds

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/meshward/meshward/intel"
)

// digestRec is one published entry: a digest of what its report says and
// when it was published (Unix seconds).
type digestRec struct {
	h  uint64
	at int64
}

// digestSet is what a feed published, sorted by digest: a re-poll of an
// unchanged entry finds it and publishes nothing. 16 bytes an entry.
type digestSet []digestRec

func (s digestSet) find(h uint64) (int64, bool) {
	i, ok := slices.BinarySearchFunc(s, h, func(r digestRec, h uint64) int {
		switch {
		case r.h < h:
			return -1
		case r.h > h:
			return 1
		}
		return 0
	})
	if !ok {
		return 0, false
	}
	return s[i].at, true
}

func (s digestSet) sort() digestSet {
	slices.SortFunc(s, func(a, b digestRec) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return 0
	})
	return slices.CompactFunc(s, func(a, b digestRec) bool { return a.h == b.h })
}

// digest of a report's content, without its times: two polls that read
// the same entry give the same digest.
func digest(r intel.IndicatorReport) uint64 {
	buf := make([]byte, 0, 256)
	buf = append(buf, r.Indicator.Type...)
	buf = append(buf, ':')
	buf = append(buf, r.Indicator.Value...)
	buf = append(buf, 0)
	buf = append(buf, r.Source...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(r.Confidence), 10)
	for _, l := range r.Labels {
		buf = append(buf, 1)
		buf = append(buf, l...)
	}
	buf = append(buf, 0)
	buf = append(buf, r.Technique...)
	buf = append(buf, 0)
	buf = append(buf, r.Description...)
	sum := sha256.Sum256(buf)
	return binary.BigEndian.Uint64(sum[:8])
}

// feedState is what a feed keeps on disk between polls and restarts.
type feedState struct {
	Validators Validators `json:"validators"`
	set        digestSet
}

const stateMagic = "meshward-feed-state 1\n"

// stateFile is where a feed's state lives in dir.
func stateFile(dir, name string) string { return filepath.Join(dir, name+".state") }

// loadState reads a feed's state; a missing file is an empty state.
func loadState(dir, name string) (feedState, error) {
	var st feedState
	f, err := os.Open(stateFile(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	magic, err := r.ReadString('\n')
	if err != nil || magic != stateMagic {
		return st, fmt.Errorf("feed state %s: not a state file", f.Name())
	}
	head, err := r.ReadString('\n')
	if err != nil {
		return st, fmt.Errorf("feed state %s: %w", f.Name(), err)
	}
	var h struct {
		feedState
		Count int `json:"count"`
	}
	if err := json.Unmarshal([]byte(head), &h); err != nil || h.Count < 0 || h.Count > 10*DefaultMaxEntries {
		return st, fmt.Errorf("feed state %s: bad header", f.Name())
	}
	st.Validators = h.Validators
	st.set = make(digestSet, h.Count)
	var rec [16]byte
	for i := range st.set {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			return feedState{}, fmt.Errorf("feed state %s: record %d: %w", f.Name(), i, err)
		}
		st.set[i] = digestRec{h: binary.BigEndian.Uint64(rec[:8]), at: int64(binary.BigEndian.Uint64(rec[8:]))}
	}
	st.set = st.set.sort()
	return st, nil
}

// saveState writes a feed's state atomically.
func saveState(dir, name string, st feedState) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+name+".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	w.WriteString(stateMagic)
	head, _ := json.Marshal(struct {
		Validators Validators `json:"validators"`
		Count      int        `json:"count"`
	}{st.Validators, len(st.set)})
	w.Write(head)
	w.WriteByte('\n')
	var rec [16]byte
	for _, d := range st.set {
		binary.BigEndian.PutUint64(rec[:8], d.h)
		binary.BigEndian.PutUint64(rec[8:], uint64(d.at))
		w.Write(rec[:])
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), stateFile(dir, name))
}
