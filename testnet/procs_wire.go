package testnet

import (
	"bytes"
	"sync"
)

// The control protocol between a coordinator and its workers: JSON
// values, one a line, on the worker's standard input (requests) and
// standard output (replies, and progress reports whose ID is 0). Each
// request carries an ID, echoed by its reply; requests may be answered
// out of order.

// WorkerArgs are the arguments that make the meshward binary a worker
// (its hidden `testnet worker` subcommand).
var WorkerArgs = []string{"testnet", "worker"}

// Worker operations.
const (
	// opStart starts the worker's nodes (workerStart) and is answered
	// once every one of them is started, with their IDs and addresses.
	opStart = "start"
	// opReady is answered once every node of the worker has all of IDs
	// on its roster and is connected to the gossip topic.
	opReady = "ready"
	// opAwait is answered once every node of the worker enforces a
	// mesh-wide block of Indicator.
	opAwait = "await"
	// opTimelines is answered with every node's timeline of Indicator.
	opTimelines = "timelines"
	// opMemory is answered with the worker's peak resident set.
	opMemory = "memory"
	// opGC holds the worker's garbage collector off (Hold) or lets it
	// run again (gchold.go), and is answered at once.
	opGC = "gc"
	// opClose closes the worker's nodes; the worker answers and exits.
	opClose = "close"
)

// workerStart is what a worker's nodes need to join the mesh.
type workerStart struct {
	// First is the index in the mesh of the worker's first node, Count
	// how many it runs, Nodes the mesh's size.
	First int `json:"first"`
	Count int `json:"count"`
	Nodes int `json:"nodes"`
	// Dir is the mesh's directory: node i's is Dir/node-<i>.
	Dir        string `json:"dir"`
	Profile    string `json:"profile"`
	MinNodes   int    `json:"min_nodes"`
	LocalBlock bool   `json:"local_block"`
	// Join is the founder's address, which every node joins through with
	// Token.
	Join  string `json:"join"`
	Token string `json:"token"`
	// Peers are the addresses of the nodes started before the worker's
	// first one that the worker knows of; the dial plan of the profile
	// picks from them and from the worker's own nodes.
	Peers []string `json:"peers"`
	// Window bounds the worker's nodes started and not yet admitted (0:
	// no bound).
	Window int `json:"window"`
}

type workerRequest struct {
	ID        int          `json:"id"`
	Op        string       `json:"op"`
	Start     *workerStart `json:"start,omitempty"`
	IDs       []string     `json:"ids,omitempty"`
	Indicator string       `json:"indicator,omitempty"`
	// Hold is opGC's: true holds the collector off, false releases it.
	Hold bool `json:"hold,omitempty"`
}

// workerNode is one node a worker started.
type workerNode struct {
	Index int    `json:"index"`
	Site  string `json:"site"`
	ID    string `json:"id"`
	Addr  string `json:"addr"`
}

type workerReply struct {
	ID        int            `json:"id"`
	Error     string         `json:"error,omitempty"`
	Nodes     []workerNode   `json:"nodes,omitempty"`
	Timelines []NodeTimeline `json:"timelines,omitempty"`
	Memory    *ProcessStats  `json:"memory,omitempty"`
	// Progress is the worker's own formation (ID 0, unasked).
	Progress *Progress `json:"progress,omitempty"`
	// Refused counts the requests the worker refused, by reason.
	Refused map[string]uint64 `json:"refused,omitempty"`
}

// tail keeps the last bytes written to it (a worker's standard error),
// to explain a worker's failure.
type tail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns the last few lines kept.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := bytes.TrimSpace(t.buf)
	if i := bytes.IndexByte(b, '\n'); len(t.buf) == t.max && i >= 0 {
		b = b[i+1:] // the first line may be cut
	}
	return string(b)
}
