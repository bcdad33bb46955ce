package admin

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/risk"
	"github.com/meshward/meshward/store"
)

// Status is one node's view of itself and of the mesh.
type Status struct {
	Node   NodeStatus `json:"node"`
	Mesh   MeshStatus `json:"mesh"`
	Health Health     `json:"health"`
}

// NodeStatus describes the node answering.
type NodeStatus struct {
	ID        string    `json:"id"`
	Site      string    `json:"site"`
	Version   string    `json:"version,omitempty"`
	Addrs     []string  `json:"addrs,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Counters are the node's counters by name (detections, proposals...).
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// MeshStatus is what the node knows of the mesh.
type MeshStatus struct {
	Leader       string   `json:"leader"` // node ID, "" when none is known
	IsLeader     bool     `json:"is_leader"`
	RaftState    string   `json:"raft_state"` // Leader, Follower, Candidate, Shutdown
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	Voters       []string `json:"voters"`
	// Kind is this node's part in the mesh: server, standby or edge.
	Kind      string   `json:"kind,omitempty"`
	Members   int      `json:"members"`
	Peers     int      `json:"peers"` // connected libp2p peers
	Policies  int      `json:"policies"`
	Protected []string `json:"protected,omitempty"`
}

// Health sums up whether the node is doing its job.
type Health struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
}

// Member is one node admitted to the mesh.
type Member struct {
	ID    string `json:"id"`
	Site  string `json:"site,omitempty"`
	Voter bool   `json:"voter"`
	// Kind is the member's part in the mesh: server (a raft voter),
	// standby (a raft non-voter) or edge (in no raft configuration; it
	// applies the entries a majority of the voters certifies).
	Kind       string    `json:"kind,omitempty"`
	Leader     bool      `json:"leader"`
	Connected  bool      `json:"connected"` // this node has a libp2p connection to it
	AdmittedAt time.Time `json:"admitted_at,omitzero"`
	Addrs      []string  `json:"addrs,omitempty"`
	// Trust is the site's trust in the FSM, 0..1000 (consensus
	// SiteTrust): it falls when an operator overturns a block the site's
	// sightings proved, and recovers with log time. Absent when the node
	// does not say.
	Trust *int `json:"trust,omitempty"`
}

// Peer is one libp2p peer this node is connected to.
type Peer struct {
	ID     string   `json:"id"`
	Addrs  []string `json:"addrs,omitempty"`
	Member bool     `json:"member"` // on the roster
	Site   string   `json:"site,omitempty"`
}

// Policy scopes.
const (
	ScopeMesh  = "mesh"  // committed through consensus
	ScopeLocal = "local" // a local decision of this node
)

// PolicyView is a policy with where it is in force.
type PolicyView struct {
	intel.Policy
	Scope string `json:"scope"`
	// Techniques are the ATT&CK techniques its evidence was detected
	// under (attack_ref.go).
	Techniques []PolicyTechnique `json:"techniques,omitempty"`
}

// PolicyRequest asks for a local block (mesh-wide policies are operator
// commands). Indicator is written as an operator would write it ("203.0.113.7",
// "198.51.100.0/24", "evil.example"); Type forces its type. TTL is a Go
// duration ("24h"); a local block must expire.
type PolicyRequest struct {
	Action    intel.Action `json:"action,omitempty"` // local decisions are blocks
	Indicator string       `json:"indicator"`
	Type      string       `json:"type,omitempty"`
	TTL       string       `json:"ttl,omitempty"`
	Reason    string       `json:"reason,omitempty"`
}

// Sighting is one stored sighting and where it came from.
type Sighting struct {
	Origin   string         `json:"origin"` // node ID of the signer
	Seq      uint64         `json:"seq"`
	Received time.Time      `json:"received"`
	Sent     time.Time      `json:"sent"`
	Sighting intel.Sighting `json:"sighting"`
	// Attack names the sighting's technique and tactics (attack_ref.go).
	Attack *AttackRef `json:"attack,omitempty"`
}

func sightingFrom(r store.SightingRecord) Sighting {
	return Sighting{Origin: r.Origin, Seq: r.Seq, Received: r.Received, Sent: r.Sent, Sighting: r.Sighting}
}

// IOC sums up what this node holds about one indicator.
type IOC struct {
	Indicator intel.Indicator `json:"indicator"`
	Sightings int             `json:"sightings"`
	Origins   int             `json:"origins"` // distinct reporting nodes
	Detectors []string        `json:"detectors,omitempty"`
	FirstSeen time.Time       `json:"first_seen"`
	LastSeen  time.Time       `json:"last_seen"`
	// Policies are the IDs of policies in force on exactly this
	// indicator, with their scope and action ("mesh:block").
	Policies []string `json:"policies,omitempty"`
	// Risk is the indicator's risk score, 0..100 (intel/risk), when the
	// node scores indicators; in a list, computed from the sightings the
	// list was made of.
	Risk *int `json:"risk_score,omitempty"`
}

// IOCDetail is an IOC with its sightings, policies and reports.
type IOCDetail struct {
	IOC
	SightingList []Sighting   `json:"sighting_list"`
	PolicyList   []PolicyView `json:"policy_list"`
	// ReportList are the indicator reports of exactly this indicator
	// among the most recent ones this node holds, newest first.
	ReportList []Report `json:"report_list"`
	// Risk is the score with its factors (name, value, weight,
	// contribution, detail), computed from every sighting of the
	// indicator this node holds, at the time asked (?at=) or now.
	Risk *risk.Result `json:"risk,omitempty"`
}

// ReportRequest publishes an indicator report mesh-wide. Indicator is
// written as an operator would write it; Type forces its type. ValidFor is
// a Go duration ("720h"); empty or "0" means the report does not expire.
// The server sets the source ("operator:<token name>") and the validity
// start (now).
type ReportRequest struct {
	Indicator   string   `json:"indicator"`
	Type        string   `json:"type,omitempty"`
	Confidence  int      `json:"confidence"` // 0..100
	Labels      []string `json:"labels,omitempty"`
	Technique   string   `json:"technique,omitempty"`
	Description string   `json:"description,omitempty"`
	ValidFor    string   `json:"valid_for,omitempty"`
}

// Report is one indicator report and where and when it came from.
type Report struct {
	Origin string `json:"origin"` // node ID of the signer
	Seq    uint64 `json:"seq"`
	// Site is the origin's site, when the roster knows it.
	Site     string                `json:"site,omitempty"`
	Received time.Time             `json:"received"`
	Sent     time.Time             `json:"sent,omitzero"`
	Active   bool                  `json:"active"` // valid now
	Report   intel.IndicatorReport `json:"report"`
}

func reportFrom(r store.ReportRecord, sites map[string]string, now time.Time) Report {
	return Report{Origin: r.Origin, Seq: r.Seq, Site: sites[r.Origin], Received: r.Received, Sent: r.Sent,
		Active: r.Report.ActiveAt(now), Report: r.Report}
}

// Token is a token as the API shows it: never its secret, except once in
// CreatedToken.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// TokenRequest asks for a new token.
type TokenRequest struct {
	Name string `json:"name,omitempty"`
	Role Role   `json:"role"`
}

// CreatedToken is a new token with its secret, shown this once.
type CreatedToken struct {
	Token
	Secret string `json:"token"`
}

// AuditEntry is one entry of the audit trail.
type AuditEntry = store.AuditEntry

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Detection is one of this node's own sightings with its ID, stable across
// requests and restarts (DetectionID), and its acknowledgement, if any.
type Detection struct {
	ID string `json:"id"`
	Sighting
	Acknowledged bool `json:"acknowledged"`
	Ack          *Ack `json:"ack,omitempty"`
	// Assigned and Comments are its triage (triage.go).
	Assigned *Assignment `json:"assigned,omitempty"`
	Comments []Comment   `json:"comments,omitempty"`
}

// Ack says that an analyst has acknowledged a detection: who (the token's
// name and ID), when, and an optional note.
type Ack struct {
	By      string    `json:"by"`
	TokenID string    `json:"token_id,omitempty"`
	Note    string    `json:"note,omitempty"`
	At      time.Time `json:"at"`
}

// AckRequest acknowledges a detection; its body is optional.
type AckRequest struct {
	Note string `json:"note,omitempty"`
}

func ackFrom(r store.AckRecord) *Ack {
	return &Ack{By: r.By, TokenID: r.TokenID, Note: r.Note, At: r.At}
}

// DetectionID is the ID of the detection carried by the sighting that
// origin signed with sequence number seq: 16 hex digits of a SHA-256 over
// both. An origin never signs two envelopes with one sequence number, so
// the ID names one detection, the same in every request and after a
// restart.
func DetectionID(origin string, seq uint64) string {
	b := make([]byte, 0, len(detectionDomain)+len(origin)+1+8)
	b = append(b, detectionDomain...)
	b = append(b, origin...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, seq)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

const detectionDomain = "meshward/detection\x00"
