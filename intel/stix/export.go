package stix

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/meshward/meshward/intel"
)

// namespace is the UUIDv5 namespace of every id Meshward exports: an id
// is a hash of this namespace and the object's canonical content, so
// exporting the same data twice gives the same ids.
var namespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://meshward.dev/stix/2.1"))

// sharedCreated is the created time of the objects that stand for a name
// alone (a node's or operator's identity, an ATT&CK technique): the same
// in every export, so that one id always has one content.
var sharedCreated = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Object is one STIX 2.1 object as Meshward writes it: the union of the
// properties of the types it exports (indicator, sighting, identity,
// attack-pattern, relationship), in a fixed order.
type Object struct {
	Type               string              `json:"type"`
	SpecVersion        string              `json:"spec_version"`
	ID                 string              `json:"id"`
	CreatedByRef       string              `json:"created_by_ref,omitempty"`
	Created            string              `json:"created"`
	Modified           string              `json:"modified"`
	Name               string              `json:"name,omitempty"`
	Description        string              `json:"description,omitempty"`
	IdentityClass      string              `json:"identity_class,omitempty"`
	IndicatorTypes     []string            `json:"indicator_types,omitempty"`
	Pattern            string              `json:"pattern,omitempty"`
	PatternType        string              `json:"pattern_type,omitempty"`
	PatternVersion     string              `json:"pattern_version,omitempty"`
	ValidFrom          string              `json:"valid_from,omitempty"`
	ValidUntil         string              `json:"valid_until,omitempty"`
	RelationshipType   string              `json:"relationship_type,omitempty"`
	SourceRef          string              `json:"source_ref,omitempty"`
	TargetRef          string              `json:"target_ref,omitempty"`
	FirstSeen          string              `json:"first_seen,omitempty"`
	LastSeen           string              `json:"last_seen,omitempty"`
	Count              int                 `json:"count,omitempty"`
	SightingOfRef      string              `json:"sighting_of_ref,omitempty"`
	WhereSightedRefs   []string            `json:"where_sighted_refs,omitempty"`
	Confidence         *int                `json:"confidence,omitempty"`
	Labels             []string            `json:"labels,omitempty"`
	ExternalReferences []externalReference `json:"external_references,omitempty"`
	ObjectMarkingRefs  []string            `json:"object_marking_refs,omitempty"`
	// Meshward's own properties.
	XSource   string `json:"x_meshward_source,omitempty"`
	XDetector string `json:"x_meshward_detector,omitempty"`
	XSite     string `json:"x_meshward_site,omitempty"`
	XPolicyID string `json:"x_meshward_policy_id,omitempty"`
	XAction   string `json:"x_meshward_action,omitempty"`

	// Shared is true for an object that stands for a name alone (an
	// identity, an attack-pattern) and appears with every record naming
	// it; a bundle holds it once.
	Shared bool `json:"-"`
}

// Report is an indicator report as a node holds it: the signed report and
// who signed it.
type Report struct {
	Origin string // the reporting node's ID
	Report intel.IndicatorReport
	Sent   time.Time // the envelope's time; zero: the report's valid_from
}

// Sighting is a signed sighting as a node holds it.
type Sighting struct {
	Origin   string // the node that saw it
	Sighting intel.Sighting
	Sent     time.Time // the envelope's time; zero: the sighting's last_seen
}

// Mapper turns Meshward's records into STIX objects. The zero Mapper
// marks nothing; NewMapper sets a TLP marking.
type Mapper struct {
	marking string // marking-definition id, or ""
	level   string
}

// NewMapper returns a mapper that marks every object with the TLP level
// given ("" for none).
func NewMapper(tlp string) (*Mapper, error) {
	if tlp == "" {
		return &Mapper{}, nil
	}
	id, err := TLPMarkingID(tlp)
	if err != nil {
		return nil, err
	}
	return &Mapper{marking: id, level: tlp2Level(id)}, nil
}

func tlp2Level(id string) string {
	for l, v := range tlp2IDs {
		if v == id {
			return l
		}
	}
	return ""
}

// MarkingObject is the marking-definition object the mapper's objects
// refer to, or nil.
func (m *Mapper) MarkingObject() map[string]any {
	if m.marking == "" {
		return nil
	}
	return tlpMarking(m.level)
}

func (m *Mapper) markings() []string {
	if m.marking == "" {
		return nil
	}
	return []string{m.marking}
}

// id is the deterministic id of an object of type typ with the given
// canonical content.
func id(typ string, content ...string) string {
	h := sha256.New()
	for _, c := range content {
		h.Write([]byte(strconv.Itoa(len(c))))
		h.Write([]byte{':'})
		h.Write([]byte(c))
	}
	return typ + "--" + uuid.NewSHA1(namespace, h.Sum(nil)).String()
}

// canonical is the JSON of v, for ids; Meshward's records encode
// deterministically.
func canonical(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("stix: encode %T: %v", v, err)) // plain structs always encode
	}
	return string(b)
}

// created formats a created or modified time: UTC, milliseconds.
func created(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// stampOf formats any other timestamp exactly.
func stampOf(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// IdentityID is the id of the identity object of a node or an operator.
func IdentityID(name string) string { return id("identity", name) }

func (m *Mapper) identity(name string) Object {
	class := "system"
	if len(name) > 9 && name[:9] == "operator:" {
		class = "individual"
	}
	c := created(sharedCreated)
	return Object{Type: "identity", SpecVersion: "2.1", ID: IdentityID(name), Created: c, Modified: c,
		Name: name, IdentityClass: class, ObjectMarkingRefs: m.markings(), Shared: true}
}

func attackRef(tech string) externalReference {
	path := tech
	if len(tech) > 5 && tech[5] == '.' {
		path = tech[:5] + "/" + tech[6:]
	}
	return externalReference{SourceName: "mitre-attack", ExternalID: tech, URL: "https://attack.mitre.org/techniques/" + path + "/"}
}

// technique adds the attack-pattern of tech and the indicates
// relationship from the indicator ind to it; tech that is not an ATT&CK
// technique ID adds nothing.
func (m *Mapper) technique(out []Object, ind Object, tech string) []Object {
	if !techniqueRE.MatchString(tech) {
		return out
	}
	c := created(sharedCreated)
	ap := Object{Type: "attack-pattern", SpecVersion: "2.1", ID: id("attack-pattern", tech), Created: c, Modified: c,
		Name: tech, ExternalReferences: []externalReference{attackRef(tech)}, ObjectMarkingRefs: m.markings(), Shared: true}
	rel := Object{Type: "relationship", SpecVersion: "2.1", ID: id("relationship", "indicates", ind.ID, ap.ID),
		CreatedByRef: ind.CreatedByRef, Created: ind.Created, Modified: ind.Modified, RelationshipType: "indicates",
		SourceRef: ind.ID, TargetRef: ap.ID, ObjectMarkingRefs: m.markings()}
	return append(out, ap, rel)
}

func (m *Mapper) indicator(ind intel.Indicator, content string, by string, at time.Time) (Object, error) {
	pat, err := FormatPattern(ind)
	if err != nil {
		return Object{}, err
	}
	return Object{Type: "indicator", SpecVersion: "2.1", ID: id("indicator", content), CreatedByRef: IdentityID(by),
		Created: created(at), Modified: created(at), Name: ind.Key(), Pattern: pat, PatternType: "stix",
		PatternVersion: "2.1", ObjectMarkingRefs: m.markings()}, nil
}

// ReportObjects are the objects of one indicator report: its indicator
// (named by the technique through external_references), the reporting
// node's identity, and the technique's attack-pattern with an indicates
// relationship. The primary object comes first.
func (m *Mapper) ReportObjects(r Report) ([]Object, error) {
	rep := r.Report
	at := r.Sent
	if at.IsZero() {
		at = rep.ValidFrom
	}
	o, err := m.indicator(rep.Indicator, "report\x00"+r.Origin+"\x00"+canonical(rep), r.Origin, at)
	if err != nil {
		return nil, err
	}
	conf := rep.Confidence
	o.Description, o.Confidence, o.Labels, o.XSource = rep.Description, &conf, rep.Labels, rep.Source
	o.ValidFrom = stampOf(rep.ValidFrom)
	if !rep.ValidUntil.IsZero() {
		o.ValidUntil = stampOf(rep.ValidUntil)
	}
	if techniqueRE.MatchString(rep.Technique) {
		o.ExternalReferences = []externalReference{attackRef(rep.Technique)}
	}
	out := []Object{o, m.identity(r.Origin)}
	return m.technique(out, o, rep.Technique), nil
}

// SightingObjects are the objects of one sighting: the sighting itself
// (sighting_of_ref an indicator of what was seen, where_sighted_refs the
// node's identity), that indicator, the identity, and the technique's
// attack-pattern with an indicates relationship. The sighting comes
// first.
func (m *Mapper) SightingObjects(s Sighting) ([]Object, error) {
	sg := s.Sighting
	at := s.Sent
	if at.IsZero() {
		at = sg.LastSeen
	}
	content := "sighting\x00" + s.Origin + "\x00" + canonical(sg)
	ind, err := m.indicator(sg.Indicator, content, s.Origin, sg.FirstSeen)
	if err != nil {
		return nil, err
	}
	conf := sg.Confidence
	ind.IndicatorTypes = []string{"malicious-activity"}
	ind.ValidFrom, ind.Confidence, ind.XDetector = stampOf(sg.FirstSeen), &conf, sg.Detector
	if techniqueRE.MatchString(sg.Technique) {
		ind.ExternalReferences = []externalReference{attackRef(sg.Technique)}
	}
	who := IdentityID(s.Origin)
	so := Object{Type: "sighting", SpecVersion: "2.1", ID: id("sighting", content), CreatedByRef: who,
		Created: created(at), Modified: created(at), Description: "detected by " + sg.Detector,
		FirstSeen: stampOf(sg.FirstSeen), LastSeen: stampOf(sg.LastSeen), Count: sg.Count,
		SightingOfRef: ind.ID, WhereSightedRefs: []string{who}, Confidence: &conf, ObjectMarkingRefs: m.markings(),
		XDetector: sg.Detector, XSite: sg.Site}
	if sg.Severity != "" {
		so.Labels = []string{"severity:" + string(sg.Severity)}
	}
	out := []Object{so, ind, m.identity(s.Origin)}
	return m.technique(out, ind, sg.Technique), nil
}

// PolicyObjects are the objects of one mesh-wide policy: an indicator
// (indicator_types malicious-activity for a block, benign for an allow,
// anomalous-activity to observe; valid until the policy expires) and its
// author's identity.
func (m *Mapper) PolicyObjects(p intel.Policy) ([]Object, error) {
	o, err := m.indicator(p.Indicator, "policy\x00"+canonical(p), p.Author, p.CreatedAt)
	if err != nil {
		return nil, err
	}
	switch p.Action {
	case intel.ActionBlock:
		o.IndicatorTypes = []string{"malicious-activity"}
	case intel.ActionAllow:
		o.IndicatorTypes = []string{"benign"}
	default:
		o.IndicatorTypes = []string{"anomalous-activity"}
	}
	o.Name = string(p.Action) + " " + p.Indicator.Key()
	o.Description, o.Labels = p.Reason, []string{"policy:" + string(p.Action)}
	o.XPolicyID, o.XAction, o.XSource = p.ID, string(p.Action), p.Author
	o.ValidFrom = stampOf(p.CreatedAt)
	if !p.ExpiresAt.IsZero() {
		o.ValidUntil = stampOf(p.ExpiresAt)
	}
	return []Object{o, m.identity(p.Author)}, nil
}

// BundleWriter writes a STIX 2.1 bundle object by object, holding only
// the ids of the shared objects written (one per node, operator and
// technique). The bundle's id is a hash of the ids of its objects, so
// the same data gives the same bundle.
type BundleWriter struct {
	w      *bufio.Writer
	enc    *json.Encoder
	shared map[string]bool
	h      interface {
		io.Writer
		Sum([]byte) []byte
	}
	n   int
	err error
}

// NewBundleWriter starts a bundle on w; the mapper's marking-definition,
// if any, is its first object.
func NewBundleWriter(w io.Writer, m *Mapper) (*BundleWriter, error) {
	bw := &BundleWriter{w: bufio.NewWriterSize(w, 64<<10), shared: make(map[string]bool), h: sha256.New()}
	bw.enc = json.NewEncoder(bw.w)
	bw.enc.SetEscapeHTML(false)
	bw.w.WriteString(`{"type":"bundle","objects":[`)
	if mo := m.MarkingObject(); mo != nil {
		if err := bw.write(mo, mo["id"].(string)); err != nil {
			return nil, err
		}
	}
	return bw, bw.err
}

// Write adds objects to the bundle, a shared object only the first time.
func (bw *BundleWriter) Write(objs ...Object) error {
	for i := range objs {
		o := &objs[i]
		if o.Shared {
			if bw.shared[o.ID] {
				continue
			}
			bw.shared[o.ID] = true
		}
		if err := bw.write(o, o.ID); err != nil {
			return err
		}
	}
	return nil
}

func (bw *BundleWriter) write(v any, id string) error {
	if bw.err != nil {
		return bw.err
	}
	if bw.n > 0 {
		bw.w.WriteByte(',')
	}
	bw.n++
	bw.h.Write([]byte(id))
	bw.h.Write([]byte{0})
	if err := bw.enc.Encode(v); err != nil {
		bw.err = fmt.Errorf("write stix object %s: %w", id, err)
	}
	return bw.err
}

// Objects is how many objects were written.
func (bw *BundleWriter) Objects() int { return bw.n }

// Close ends the bundle (with its id) and flushes it. It does not close
// the writer underneath.
func (bw *BundleWriter) Close() error {
	if bw.err != nil {
		return bw.err
	}
	sum := bw.h.Sum(nil)
	bid := "bundle--" + uuid.NewSHA1(namespace, sum).String()
	fmt.Fprintf(bw.w, `],"id":%q}`+"\n", bid)
	if err := bw.w.Flush(); err != nil {
		bw.err = fmt.Errorf("write stix bundle: %w", err)
	}
	return bw.err
}
