package admin

// Runtime profiles for diagnosis in the field: the handlers of
// net/http/pprof, mounted on the API's own mux behind an admin token
// (never on http.DefaultServeMux, which no server of the node serves).

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
)

// maxProfileSeconds bounds how long a CPU profile, a trace or a delta
// profile may run, so that no request holds the profiler for long; it is
// well under the server's write timeout.
const maxProfileSeconds = 60

// profiles are the profiles served under /debug/pprof/. The command line
// and symbol look-ups are not served.
var profiles = map[string]http.Handler{
	"profile":      http.HandlerFunc(pprof.Profile),
	"trace":        http.HandlerFunc(pprof.Trace),
	"heap":         pprof.Handler("heap"),
	"allocs":       pprof.Handler("allocs"),
	"goroutine":    pprof.Handler("goroutine"),
	"block":        pprof.Handler("block"),
	"mutex":        pprof.Handler("mutex"),
	"threadcreate": pprof.Handler("threadcreate"),
}

// streamBody is a response a handler writes itself, once the request is
// authorized.
type streamBody struct{ h http.Handler }

// statusWriter records the status a streamBody answers with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// profileSeconds checks the seconds parameter: absent, or 1 to
// maxProfileSeconds.
func profileSeconds(c *call) (int, error) {
	v := c.r.URL.Query().Get("seconds")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxProfileSeconds {
		return 0, rejected(reasonProfileSeconds, fmt.Errorf("%w: seconds %q: want 1 to %d", ErrInvalid, v, maxProfileSeconds))
	}
	return n, nil
}

func getPprofIndex(_ *Server, c *call) (any, error) {
	c.target = "index"
	return streamBody{http.HandlerFunc(pprof.Index)}, nil
}

func getPprof(_ *Server, c *call) (any, error) {
	name := c.r.PathValue("name")
	c.target = name
	h, ok := profiles[name]
	if !ok {
		return nil, rejected(reasonUnknownProfile, fmt.Errorf("%w: profile %q (want profile, trace, heap, allocs, goroutine, block, mutex or threadcreate)", ErrNotFound, name))
	}
	secs, err := profileSeconds(c)
	if err != nil {
		return nil, err
	}
	if secs > 0 {
		c.detail = "seconds=" + strconv.Itoa(secs)
	}
	return streamBody{h}, nil
}
