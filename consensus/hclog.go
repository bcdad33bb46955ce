package consensus

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// slogAdapter lets raft log through our slog.Logger. Its level is fixed at
// construction (SetLevel is honoured but shared by derived loggers).
type slogAdapter struct {
	l     *slog.Logger
	name  string
	args  []any
	level *hclog.Level
}

var _ hclog.Logger = (*slogAdapter)(nil)

// newRaftLogger returns an hclog.Logger writing to l: warn and above, or
// debug and above when l is enabled for debug.
func newRaftLogger(l *slog.Logger) hclog.Logger {
	lvl := hclog.Warn
	if l.Enabled(context.Background(), slog.LevelDebug) {
		lvl = hclog.Debug
	}
	return &slogAdapter{l: l.With("part", "raft"), level: &lvl}
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *slogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < *a.level {
		return
	}
	if a.name != "" {
		msg = a.name + ": " + msg
	}
	all := make([]any, 0, len(a.args)+len(args))
	all = append(all, a.args...)
	all = append(all, args...)
	a.l.Log(context.Background(), toSlog(level), msg, all...)
}

func (a *slogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *slogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *slogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *slogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *slogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *slogAdapter) IsTrace() bool                 { return *a.level <= hclog.Trace }
func (a *slogAdapter) IsDebug() bool                 { return *a.level <= hclog.Debug }
func (a *slogAdapter) IsInfo() bool                  { return *a.level <= hclog.Info }
func (a *slogAdapter) IsWarn() bool                  { return *a.level <= hclog.Warn }
func (a *slogAdapter) IsError() bool                 { return *a.level <= hclog.Error }
func (a *slogAdapter) ImpliedArgs() []any            { return a.args }
func (a *slogAdapter) Name() string                  { return a.name }
func (a *slogAdapter) SetLevel(level hclog.Level)    { *a.level = level }
func (a *slogAdapter) GetLevel() hclog.Level         { return *a.level }

func (a *slogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.args = append(append([]any{}, a.args...), args...)
	return &c
}

func (a *slogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (a *slogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *slogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *slogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		a.Log(hclog.Info, strings.TrimRight(string(p), "\n"))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
