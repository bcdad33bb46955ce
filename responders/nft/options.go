package nft

import (
	"errors"
	"fmt"
	"time"
)

// Option configures a Firewall.
type Option func(*config) error

type config struct {
	table     string
	netns     int
	now       func() time.Time
	batchSize int
	fullEvery int
	fullAfter time.Duration
	seen      map[string]bool
}

func (c *config) once(name string) error {
	if c.seen[name] {
		return fmt.Errorf("option %s given twice", name)
	}
	c.seen[name] = true
	return nil
}

// WithTable sets the name of the inet table (default "meshward").
func WithTable(name string) Option {
	return func(c *config) error {
		if err := c.once("WithTable"); err != nil {
			return err
		}
		if name == "" || len(name) > 255 {
			return fmt.Errorf("table name %q must be 1 to 255 bytes", name)
		}
		c.table = name
		return nil
	}
}

// WithNetNS makes the backend work in the network namespace open as fd
// instead of the caller's. The caller keeps fd open while the backend is.
func WithNetNS(fd int) Option {
	return func(c *config) error {
		if err := c.once("WithNetNS"); err != nil {
			return err
		}
		if fd <= 0 {
			return fmt.Errorf("netns fd %d is not valid", fd)
		}
		c.netns = fd
		return nil
	}
}

// WithClock sets the clock element timeouts are computed from (default
// time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if err := c.once("WithClock"); err != nil {
			return err
		}
		if now == nil {
			return errors.New("clock is nil")
		}
		c.now = now
		return nil
	}
}

// WithBatchSize sets how many elements one netlink batch carries (default
// DefaultBatchSize).
func WithBatchSize(n int) Option {
	return func(c *config) error {
		if err := c.once("WithBatchSize"); err != nil {
			return err
		}
		if n < 1 || n > 1<<20 {
			return fmt.Errorf("batch size %d out of range 1..1048576", n)
		}
		c.batchSize = n
		return nil
	}
}

// WithFullReadEvery makes Current and Compare read the sets back from the
// kernel in full at least every passes calls or every interval, whichever
// comes first, on top of the reads a changed ruleset generation forces.
// One pass reads in full on every call, as a backend without a view
// would. By default there is no such bound: the generation check alone
// decides (see the package documentation).
func WithFullReadEvery(passes int, interval time.Duration) Option {
	return func(c *config) error {
		if err := c.once("WithFullReadEvery"); err != nil {
			return err
		}
		if passes < 1 {
			return fmt.Errorf("full read every %d passes: must be at least 1", passes)
		}
		if interval <= 0 {
			return fmt.Errorf("full read interval %v must be positive", interval)
		}
		c.fullEvery, c.fullAfter = passes, interval
		return nil
	}
}
