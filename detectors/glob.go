package detectors

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

func init() { RegisterSource("files", newFilesSource) }

// newFilesSource follows the section's paths, when it lists any.
func newFilesSource(c Config) (Source, error) {
	if len(c.Paths) == 0 {
		return nil, nil
	}
	return &GlobSource{Patterns: c.Paths, FromStart: c.FromStart, PollInterval: c.PollInterval, NoNotify: !c.Inotify}, nil
}

// GlobSource follows every file that matches its patterns, each with a
// FileSource (so rotation, truncation and partial lines are handled per
// file), and starts following files that match later. Patterns should
// name live logs ("/var/log/nginx/*access.log"), not their rotated copies
// ("*.log.1"), which the FileSource of the live name already drains.
//
// Set the fields before Run; do not copy a GlobSource after first use.
type GlobSource struct {
	Patterns []string
	// FromStart reads the files that match at start from their
	// beginning; files that appear later are always read whole.
	FromStart    bool
	PollInterval time.Duration // per file (default 250ms)
	MaxLineBytes int           // per line (default 8 KiB)
	NoNotify     bool          // poll only, without inotify
	// Rescan is how often the patterns are matched again (default 5s).
	Rescan time.Duration
	// MaxFiles bounds the files followed at once (default 256); further
	// matches are counted in Skipped.
	MaxFiles int

	mu      sync.Mutex
	files   map[string]*FileSource
	skipped uint64
}

var _ Source = (*GlobSource)(nil)

// Files returns the paths followed now, sorted, and the matches skipped
// because MaxFiles was reached.
func (g *GlobSource) Files() (paths []string, skipped uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p := range g.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths, g.skipped
}

// Run follows the matching files until ctx ends or one of them fails.
func (g *GlobSource) Run(ctx context.Context, out chan<- string) error {
	if len(g.Patterns) == 0 {
		return errors.New("glob source: no patterns")
	}
	for _, p := range g.Patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("glob source: pattern %q: %w", p, err)
		}
	}
	rescan := g.Rescan
	if rescan <= 0 {
		rescan = 5 * time.Second
	}
	limit := g.MaxFiles
	if limit <= 0 {
		limit = 256
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, 1)
	g.mu.Lock()
	g.files = map[string]*FileSource{}
	g.mu.Unlock()
	first := true
	scan := func() {
		var found []string
		for _, p := range g.Patterns {
			m, _ := filepath.Glob(p) // the pattern was checked above
			found = append(found, m...)
		}
		sort.Strings(found)
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, path := range found {
			if g.files[path] != nil {
				continue
			}
			if len(g.files) >= limit {
				g.skipped++
				continue
			}
			fs := &FileSource{Path: path, FromStart: g.FromStart || !first, PollInterval: g.PollInterval, MaxLineBytes: g.MaxLineBytes, NoNotify: g.NoNotify}
			g.files[path] = fs
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fs.Run(ctx, out); err != nil {
					select {
					case errc <- err:
					default:
					}
					cancel()
				}
			}()
		}
		first = false
	}
	scan()
	tick := time.NewTicker(rescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			select {
			case err := <-errc:
				return fmt.Errorf("glob source: %w", err)
			default:
				return nil
			}
		case <-tick.C:
			scan()
		}
	}
}
