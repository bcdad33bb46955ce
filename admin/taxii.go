package admin

// The TAXII 2.1 read endpoints: discovery at /taxii2/, one API root at
// /taxii2/api/, and three read-only collections of STIX 2.1 objects made
// from what the node holds (indicator reports, sightings, mesh-wide
// policies). They are served on the admin listeners, to the holders of
// viewer (or higher) tokens, presented as a bearer token or as the
// password of HTTP Basic authentication (any user name).

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/meshward/meshward/intel/stix"
)

// TAXII media types.
const (
	TAXIIMediaType = "application/taxii+json;version=2.1"
	STIXMediaType  = "application/stix+json;version=2.1"
)

// Bounds of the TAXII endpoints.
const (
	taxiiDefaultLimit = 100
	taxiiMaxLimit     = 1000
)

// Why a TAXII request was refused (besides authentication): reason labels
// of meshward_admin_requests_rejected_total.
const (
	reasonNotAcceptable = "taxii_not_acceptable" // Accept does not allow the TAXII media type (406)
	reasonBadFilter     = "taxii_bad_filter"     // a malformed added_after or match[...] (400)
	reasonBadMethod     = "taxii_method"         // anything but GET (405)
)

// taxiiCollection is one collection of the API root.
type taxiiCollection struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Description string   `json:"description,omitempty"`
	CanRead     bool     `json:"can_read"`
	CanWrite    bool     `json:"can_write"`
	MediaTypes  []string `json:"media_types"`
	name        string
}

var taxiiNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://meshward.dev/taxii2/collections"))

func newCollection(name, title, desc string) taxiiCollection {
	return taxiiCollection{ID: uuid.NewSHA1(taxiiNS, []byte(name)).String(), Title: title, Description: desc,
		CanRead: true, MediaTypes: []string{STIXMediaType}, name: name}
}

// taxiiCollections are the collections, the same ids on every node.
var taxiiCollections = []taxiiCollection{
	newCollection(colIndicators, "Mesh indicators", "Indicator reports held by this node (its own and other nodes'): indicator objects, with indicates relationships to ATT&CK techniques."),
	newCollection(colSightings, "Mesh sightings", "Sightings held by this node: sighting objects and the indicators they are sightings of."),
	newCollection(colPolicies, "Mesh policies", "Mesh-wide policies in force: one indicator object each (malicious-activity for a block, benign for an allow)."),
}

// TAXIICollectionID is the id of a collection ("indicators", "sightings"
// or "policies"), or "".
func TAXIICollectionID(name string) string {
	for _, c := range taxiiCollections {
		if c.name == name {
			return c.ID
		}
	}
	return ""
}

// taxiiError is TAXII's error message.
type taxiiError struct {
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
	HTTPStatus  string `json:"http_status,omitempty"`
}

// taxiiRoute names the TAXII endpoints for the request metrics.
const taxiiRoute = "GET /taxii2/"

// mountTAXII serves the TAXII endpoints under /taxii2/ beside the API.
func (s *Server) mountTAXII(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/taxii2/", s.taxiiHandler())
	mux.Handle("/", api)
	return mux
}

// taxiiHandler serves everything under /taxii2/.
func (s *Server) taxiiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/taxii2/{$}", s.taxiiDiscovery)
	mux.HandleFunc("/taxii2/api/{$}", s.taxiiAPIRoot)
	mux.HandleFunc("/taxii2/api/collections/{$}", s.taxiiCollectionsList)
	mux.HandleFunc("/taxii2/api/collections/{cid}/{$}", s.taxiiCollection)
	mux.HandleFunc("/taxii2/api/collections/{cid}/objects/{$}", s.taxiiObjects)
	mux.HandleFunc("/taxii2/api/collections/{cid}/manifest/{$}", s.taxiiManifest)
	mux.HandleFunc("/taxii2/api/collections/{cid}/objects/{oid}/{$}", s.taxiiObject)
	mux.HandleFunc("/taxii2/api/collections/{cid}/objects/{oid}/versions/{$}", s.taxiiVersions)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.taxiiFail(w, http.StatusNotFound, "not found", "no TAXII endpoint at "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Authentication first: nothing about the API is told to a
		// stranger.
		tok := taxiiToken(r)
		who, err := s.authenticate(tok)
		if err != nil {
			s.authFailed(r, taxiiRoute, tok, err)
			w.Header().Set("WWW-Authenticate", `Basic realm="meshward TAXII"`)
			w.Header().Add("WWW-Authenticate", `Bearer realm="meshward TAXII"`)
			s.taxiiFail(w, http.StatusUnauthorized, "unauthorized", "missing or invalid token (give it as a bearer token or as the Basic password)")
			return
		}
		if !who.role.Allows(RoleViewer) {
			s.metrics.authFailures.WithLabelValues("forbidden").Inc()
			s.taxiiFail(w, http.StatusForbidden, "forbidden", fmt.Sprintf("role %s may not read TAXII collections", who.role))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.metrics.rejections.WithLabelValues(reasonBadMethod).Inc()
			w.Header().Set("Allow", "GET, HEAD")
			s.taxiiFail(w, http.StatusMethodNotAllowed, "method not allowed",
				r.Method+" is not allowed: the collections are read-only")
			return
		}
		if !acceptsTAXII(r.Header.Values("Accept")) {
			s.metrics.rejections.WithLabelValues(reasonNotAcceptable).Inc()
			s.taxiiFail(w, http.StatusNotAcceptable, "not acceptable",
				"the Accept header must allow "+TAXIIMediaType)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// taxiiToken is the token of a request: a bearer token, or the password
// of Basic authentication.
func taxiiToken(r *http.Request) string {
	if tok := bearer(r); tok != "" {
		return tok
	}
	if _, pass, ok := r.BasicAuth(); ok {
		return strings.TrimSpace(pass)
	}
	return ""
}

// acceptsTAXII reports whether the Accept header values allow TAXII 2.1
// (an absent header allows anything).
func acceptsTAXII(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			switch mt {
			case "*/*", "application/*":
				return true
			case "application/taxii+json":
				if v, ok := params["version"]; !ok || v == "2.1" {
					return true
				}
			}
		}
	}
	return false
}

func (s *Server) taxiiFail(w http.ResponseWriter, status int, title, desc string) {
	s.writeTAXII(w, status, taxiiError{Title: title, Description: desc, HTTPStatus: strconv.Itoa(status)})
}

func (s *Server) writeTAXII(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(taxiiError{Title: "internal error", Description: "encode response: " + err.Error(), HTTPStatus: "500"})
	}
	s.metrics.requests.WithLabelValues(taxiiRoute, codeLabel(status)).Inc()
	w.Header().Set("Content-Type", TAXIIMediaType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// taxiiErr answers with the TAXII error of err.
func (s *Server) taxiiErr(w http.ResponseWriter, r *http.Request, err error) {
	status, _ := statusOf(err)
	var rj *rejection
	if errors.As(err, &rj) {
		s.metrics.rejections.WithLabelValues(rj.reason).Inc()
	}
	if status == http.StatusInternalServerError {
		s.log.Error("TAXII request failed", "path", r.URL.Path, "err", err)
	}
	s.taxiiFail(w, status, strings.ToLower(http.StatusText(status)), err.Error())
}

// baseURL is the URL this request reached the server at.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if host == "" {
		host = "localhost"
	}
	return scheme + "://" + host
}

func (s *Server) taxiiDiscovery(w http.ResponseWriter, r *http.Request) {
	root := baseURL(r) + "/taxii2/api/"
	s.writeTAXII(w, http.StatusOK, map[string]any{
		"title":       "Meshward node " + s.statusSvc.ID(),
		"description": "The threat intelligence this Meshward node holds: indicator reports, sightings and mesh-wide policies, as STIX 2.1.",
		"default":     root,
		"api_roots":   []string{root},
	})
}

func (s *Server) taxiiAPIRoot(w http.ResponseWriter, r *http.Request) {
	s.writeTAXII(w, http.StatusOK, map[string]any{
		"title":              "Meshward",
		"versions":           []string{TAXIIMediaType},
		"max_content_length": maxBody,
	})
}

func (s *Server) taxiiCollectionsList(w http.ResponseWriter, r *http.Request) {
	s.writeTAXII(w, http.StatusOK, map[string]any{"collections": taxiiCollections})
}

// collectionOf is the collection a request names.
func collectionOf(r *http.Request) (taxiiCollection, error) {
	id := r.PathValue("cid")
	for _, c := range taxiiCollections {
		if c.ID == id {
			return c, nil
		}
	}
	return taxiiCollection{}, fmt.Errorf("%w: no collection %q", ErrNotFound, id)
}

func (s *Server) taxiiCollection(w http.ResponseWriter, r *http.Request) {
	c, err := collectionOf(r)
	if err != nil {
		s.taxiiErr(w, r, err)
		return
	}
	s.writeTAXII(w, http.StatusOK, c)
}

// taxiiQuery is the filters and paging of a request.
type taxiiQuery struct {
	limit      int
	addedAfter time.Time
	after      *taxiiItem // the next cursor's position
	types      map[string]bool
	ids        map[string]bool
	versions   map[string]bool // "first", "last", "all" or a modified time
	specOK     bool
}

func badFilter(format string, args ...any) error {
	return rejected(reasonBadFilter, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...)))
}

func parseTAXIIQuery(r *http.Request) (taxiiQuery, error) {
	q := taxiiQuery{limit: taxiiDefaultLimit, specOK: true}
	v := r.URL.Query()
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return q, rejected(reasonBadLimit, fmt.Errorf("%w: limit %q: want a positive number", ErrInvalid, l))
		}
		q.limit = min(n, taxiiMaxLimit) // a server may give fewer than asked
	}
	if a := v.Get("added_after"); a != "" {
		t, err := time.Parse(time.RFC3339Nano, a)
		if err != nil {
			return q, badFilter("added_after %q: want a timestamp such as 2026-01-02T03:04:05.000000Z", a)
		}
		q.addedAfter = t.UTC()
	}
	if n := v.Get("next"); n != "" {
		it, err := decodeTAXIICursor(n)
		if err != nil {
			return q, rejected(reasonBadCursor, fmt.Errorf("%w: next %q: not a cursor this server handed out", ErrInvalid, n))
		}
		q.after = &it
	}
	list := func(name string) map[string]bool {
		var m map[string]bool
		for _, val := range v[name] {
			for _, x := range strings.Split(val, ",") {
				if x = strings.TrimSpace(x); x != "" {
					if m == nil {
						m = make(map[string]bool)
					}
					m[x] = true
				}
			}
		}
		return m
	}
	q.types, q.ids, q.versions = list("match[type]"), list("match[id]"), list("match[version]")
	for ver := range q.versions {
		if ver != "first" && ver != "last" && ver != "all" {
			if _, err := time.Parse(time.RFC3339Nano, ver); err != nil {
				return q, badFilter("match[version] %q: want first, last, all or a timestamp", ver)
			}
		}
	}
	if sv := list("match[spec_version]"); sv != nil && !sv["2.1"] {
		q.specOK = false
	}
	return q, nil
}

// matches reports whether an object passes the filters (not the paging).
func (q *taxiiQuery) matches(it taxiiItem) bool {
	if !q.specOK || !it.added.After(q.addedAfter) && !q.addedAfter.IsZero() {
		return false
	}
	if q.types != nil && !q.types[it.obj.Type] {
		return false
	}
	if q.ids != nil && !q.ids[it.obj.ID] {
		return false
	}
	if q.versions != nil && !q.versions["first"] && !q.versions["last"] && !q.versions["all"] {
		// One version of each object: its modified time.
		mod, _ := time.Parse(time.RFC3339Nano, it.obj.Modified)
		ok := false
		for v := range q.versions {
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.Equal(mod) {
				ok = true
			}
		}
		return ok
	}
	return true
}

// cursor is a position in a collection's order: date added and key.
func encodeTAXIICursor(it taxiiItem) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(it.added.UnixMicro(), 10) + "|" + it.key))
}

func decodeTAXIICursor(s string) (taxiiItem, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return taxiiItem{}, err
	}
	us, key, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || key == "" {
		return taxiiItem{}, errors.New("malformed cursor")
	}
	return taxiiItem{added: time.UnixMicro(n).UTC(), key: key}, nil
}

// page selects a page of a collection's objects: the first q.limit
// objects after the cursor that pass the filters, in the collection's
// order, and whether more follow. Without a filter on the objects
// themselves, only the records that can make the page are turned into
// objects: every record gives at least one object.
func (s *Server) page(r *http.Request, col taxiiCollection, q taxiiQuery) ([]taxiiItem, bool, error) {
	m := &stix.Mapper{}
	want := q.limit + 1
	sm := &smallest[taxiiItem]{n: want, cmp: taxiiItem.cmp}
	items := func(rec stixRecord) {
		for i, o := range s.objects(rec) {
			if o.Shared {
				continue
			}
			it := taxiiItem{added: rec.added, key: fmt.Sprintf("%s#%02d", rec.key, i), obj: o}
			if q.after != nil && it.cmp(*q.after) <= 0 {
				continue
			}
			if q.matches(it) {
				sm.add(it)
			}
		}
	}
	if q.types != nil || q.ids != nil || q.versions != nil || !q.specOK {
		err := s.stixRecords(r.Context(), col.name, m, func(rec stixRecord) (bool, error) {
			items(rec)
			return true, nil
		})
		if err != nil {
			return nil, false, err
		}
	} else {
		// The records from the cursor's own (which may be partly served)
		// on, a batch at a time until the page is full or none is left.
		var from *stixRecord
		if q.after != nil {
			key, _, _ := strings.Cut(q.after.key, "#")
			from = &stixRecord{added: q.after.added, key: key}
		}
		strict := false
		for {
			batch := &smallest[stixRecord]{n: want, cmp: cmpRecords}
			err := s.stixRecords(r.Context(), col.name, m, func(rec stixRecord) (bool, error) {
				if !q.addedAfter.IsZero() && !rec.added.After(q.addedAfter) {
					return true, nil
				}
				if from != nil {
					if c := cmpRecords(rec, *from); c < 0 || c == 0 && strict {
						return true, nil
					}
				}
				batch.add(rec)
				return true, nil
			})
			if err != nil {
				return nil, false, err
			}
			recs := batch.result()
			for _, rec := range recs {
				items(rec)
			}
			if len(sm.items) >= want || len(recs) < want {
				break
			}
			// Records that gave nothing (refused by the mapper): go on.
			last := recs[len(recs)-1]
			from, strict = &last, true
		}
	}
	out := sm.result()
	more := len(out) > q.limit
	if more {
		out = out[:q.limit]
	}
	return out, more, nil
}

// pageHeaders sets the X-TAXII-Date-Added-First and -Last headers.
func pageHeaders(w http.ResponseWriter, items []taxiiItem) {
	if len(items) == 0 {
		return
	}
	w.Header().Set("X-TAXII-Date-Added-First", items[0].added.Format(taxiiStamp))
	w.Header().Set("X-TAXII-Date-Added-Last", items[len(items)-1].added.Format(taxiiStamp))
}

// taxiiStamp is TAXII's timestamp format, to the microsecond.
const taxiiStamp = "2006-01-02T15:04:05.000000Z"

// taxiiEnvelope is TAXII's envelope of objects.
type taxiiEnvelope struct {
	More    bool          `json:"more"`
	Next    string        `json:"next,omitempty"`
	Objects []stix.Object `json:"objects,omitempty"`
}

// requestedPage is the page of the collection r names that its query
// asks for.
func (s *Server) requestedPage(r *http.Request) ([]taxiiItem, bool, error) {
	col, err := collectionOf(r)
	if err != nil {
		return nil, false, err
	}
	q, err := parseTAXIIQuery(r)
	if err != nil {
		return nil, false, err
	}
	return s.page(r, col, q)
}

func (s *Server) taxiiObjects(w http.ResponseWriter, r *http.Request) {
	items, more, err := s.requestedPage(r)
	if err != nil {
		s.taxiiErr(w, r, err)
		return
	}
	env := taxiiEnvelope{More: more}
	for _, it := range items {
		env.Objects = append(env.Objects, it.obj)
	}
	if more {
		env.Next = encodeTAXIICursor(items[len(items)-1])
	}
	pageHeaders(w, items)
	s.writeTAXII(w, http.StatusOK, env)
}

type manifestRecord struct {
	ID        string `json:"id"`
	DateAdded string `json:"date_added"`
	Version   string `json:"version"`
	MediaType string `json:"media_type"`
}

func (s *Server) taxiiManifest(w http.ResponseWriter, r *http.Request) {
	items, more, err := s.requestedPage(r)
	if err != nil {
		s.taxiiErr(w, r, err)
		return
	}
	out := struct {
		More    bool             `json:"more"`
		Next    string           `json:"next,omitempty"`
		Objects []manifestRecord `json:"objects,omitempty"`
	}{More: more}
	for _, it := range items {
		out.Objects = append(out.Objects, manifestRecord{ID: it.obj.ID, DateAdded: it.added.Format(taxiiStamp),
			Version: it.obj.Modified, MediaType: STIXMediaType})
	}
	if more {
		out.Next = encodeTAXIICursor(items[len(items)-1])
	}
	pageHeaders(w, items)
	s.writeTAXII(w, http.StatusOK, out)
}

// objectItems are the objects of a collection with one id (its
// versions), in order.
func (s *Server) objectItems(w http.ResponseWriter, r *http.Request) ([]taxiiItem, bool, bool) {
	col, err := collectionOf(r)
	if err != nil {
		s.taxiiErr(w, r, err)
		return nil, false, false
	}
	q, err := parseTAXIIQuery(r)
	if err != nil {
		s.taxiiErr(w, r, err)
		return nil, false, false
	}
	oid := r.PathValue("oid")
	q.ids = map[string]bool{oid: true}
	items, more, err := s.page(r, col, q)
	if err != nil {
		s.taxiiErr(w, r, err)
		return nil, false, false
	}
	if len(items) == 0 && q.after == nil {
		s.taxiiErr(w, r, fmt.Errorf("%w: no object %q in collection %s", ErrNotFound, oid, col.ID))
		return nil, false, false
	}
	return items, more, true
}

func (s *Server) taxiiObject(w http.ResponseWriter, r *http.Request) {
	items, more, ok := s.objectItems(w, r)
	if !ok {
		return
	}
	env := taxiiEnvelope{More: more}
	for _, it := range items {
		env.Objects = append(env.Objects, it.obj)
	}
	if more {
		env.Next = encodeTAXIICursor(items[len(items)-1])
	}
	pageHeaders(w, items)
	s.writeTAXII(w, http.StatusOK, env)
}

func (s *Server) taxiiVersions(w http.ResponseWriter, r *http.Request) {
	items, more, ok := s.objectItems(w, r)
	if !ok {
		return
	}
	out := struct {
		More     bool     `json:"more"`
		Versions []string `json:"versions"`
	}{More: more, Versions: []string{}}
	for _, it := range items {
		out.Versions = append(out.Versions, it.obj.Modified)
	}
	pageHeaders(w, items)
	s.writeTAXII(w, http.StatusOK, out)
}
