package admin

import (
	"context"
	"errors"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// Errors a Node wraps so that the API answers with the right status.
// Errors wrapping none of them (nor store.ErrNotFound, nor a context
// error) are answered with 500 and logged.
var (
	// ErrNotFound: the member, policy or decision asked for does not
	// exist (404).
	ErrNotFound = errors.New("not found")
	// ErrRefused: the mesh refused the change, e.g. a block covering a
	// protected range or an allowed indicator (409).
	ErrRefused = errors.New("refused")
	// ErrUnavailable: the change cannot be made now, e.g. no leader or no
	// quorum (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalid: the request is malformed (400).
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden: the mesh refused the operator's signature: an unknown
	// operator key, a role that does not permit the command, a replayed
	// command (403).
	ErrForbidden = errors.New("forbidden")
	// ErrTooLarge: the request body is over the route's limit (413).
	ErrTooLarge = errors.New("request too large")
)

// Node is what the admin API needs of a running node: one role interface
// per noun of the API, so that a node may implement each with its own
// small type and embed them. Reads should be cheap; writes block until
// done or until ctx ends.
type Node interface {
	StatusService
	MemberService
	PolicyService
	SightingService
	ReportService
	OperatorService
}

// StatusService is who this node is and how it and the mesh are; the
// status route, the detections (this node's own sightings) and the
// reports this node publishes need it.
type StatusService interface {
	// ID is the node's ID.
	ID() string
	// Status reports this node and the mesh as this node sees it.
	Status(ctx context.Context) (Status, error)
}

// MemberService is the roster and the connected peers, for the members
// and peers routes (and the sites shown with reports). Removing a member
// is an operator command (OperatorService).
type MemberService interface {
	// Members lists the roster.
	Members(ctx context.Context) ([]Member, error)
	// Peers lists the connected libp2p peers.
	Peers(ctx context.Context) ([]Peer, error)
}

// PolicyService is the mesh-wide policies and this node's local
// decisions, for the policies and local-decisions routes (and the
// policies shown with indicators). Mesh-wide policies change only through
// operator commands (OperatorService).
type PolicyService interface {
	// MeshPolicy returns the mesh-wide policy with this ID, if it is
	// active at now.
	MeshPolicy(id string, now time.Time) (intel.Policy, bool)
	// MeshPolicyPage returns up to limit mesh-wide policies active at now
	// with IDs greater than after, in ID order, and the ID to pass as
	// after for the next page ("" when there is none). It never copies
	// every policy.
	MeshPolicyPage(after string, limit int, now time.Time) (page []intel.Policy, next string)
	// LocalDecisions are this node's local decisions active at now.
	LocalDecisions(now time.Time) []intel.Policy
	// PutLocalDecision stores a local decision and has the responders
	// enforce it.
	PutLocalDecision(ctx context.Context, p intel.Policy) error
	// DeleteLocalDecision deletes a local decision and has the responders
	// lift it.
	DeleteLocalDecision(ctx context.Context, id string) error
}

// SightingService is the stored sightings, for the sightings, indicators
// and detections routes.
type SightingService interface {
	// Sightings returns up to limit stored sightings, most recently
	// received first (store.Store.Sightings).
	Sightings(ctx context.Context, limit int) ([]store.SightingRecord, error)
	// SightingsFor returns the stored sightings of one canonical
	// indicator, oldest first (store.Store.SightingsFor with a zero
	// since).
	SightingsFor(ctx context.Context, ind intel.Indicator) ([]store.SightingRecord, error)
}

// ReportService is the indicator reports, for the reports routes (and the
// reports shown with indicators).
type ReportService interface {
	// PublishReport signs, stores and gossips an indicator report mesh-wide;
	// it returns the envelope's sequence number. Reports inform; they never
	// block by themselves.
	PublishReport(ctx context.Context, r intel.IndicatorReport) (seq uint64, err error)
	// Reports returns up to limit indicator reports this node holds (its own
	// and other nodes'), most recently received first.
	Reports(ctx context.Context, limit int) ([]store.ReportRecord, error)
}

// Store keeps tokens, the audit trail and the acknowledgements of
// detections; *store.Store implements it.
type Store interface {
	TokenStore
	AuditStore
	AckStore
}

// TokenStore keeps the tokens' records (never their secrets).
type TokenStore interface {
	CreateToken(store.TokenRecord) error
	Token(id string) (store.TokenRecord, error)
	Tokens() ([]store.TokenRecord, error)
	DeleteToken(id string) error
}

// AuditStore keeps the audit trail.
type AuditStore interface {
	AppendAudit(store.AuditEntry) error
	Audit(limit int) ([]store.AuditEntry, error)
}

// AckStore keeps the acknowledgements of detections.
type AckStore interface {
	// CreateAck stores an acknowledgement, or returns store.ErrExists
	// when the detection is already acknowledged.
	CreateAck(store.AckRecord) error
	// Ack returns a detection's acknowledgement or store.ErrNotFound.
	Ack(id string) (store.AckRecord, error)
	// AcksFor returns the acknowledgements of those of ids that have one.
	AcksFor(ids []string) (map[string]store.AckRecord, error)
	// DeleteAck removes an acknowledgement or returns store.ErrNotFound.
	DeleteAck(id string) error
}

var _ Store = (*store.Store)(nil)
