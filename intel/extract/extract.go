// Package extract pulls indicators out of unstructured text: advisories,
// reports and mails in plain text, Markdown or HTML.
//
// Text is read line by line. Each line has its HTML entities decoded (in
// attributes as well, since the whole line is decoded), is refanged
// (hxxp, [.], (.), {.}, [dot], [:], [://], [at], [@]), and is then scanned
// for URLs (http and https, found with mvdan.cc/xurls/v2), e-mail addresses,
// IPv6 and IPv4 addresses, CIDR networks, domains, MD5, SHA-1 and SHA-256
// hashes, CVE IDs and ATT&CK technique IDs.
//
// Values are canonical: refanged, domains and hashes lower-case, addresses
// in RFC 5952 form, networks masked, CVE-2024-3400, T1059.001. Every valid
// indicator is reported; one in a reserved, private or documentation range
// carries a Flag saying so instead of being dropped.
//
// An indicator found inside a longer one is not reported on its own (the
// host of a URL, the domain of an e-mail address, the parent of a
// sub-technique, an IPv4 address inside a longer dotted number such as an
// OID or a version), with one exception: a hash inside a URL is also
// reported as a hash. Domains must end in a real ICANN public suffix, so
// that payload.exe and config.php are file names, not domains.
package extract

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/meshward/meshward/intel"
)

// Type names the kind of an extracted indicator.
type Type string

// The types Extract reports.
const (
	IPv4            Type = "ipv4"
	IPv6            Type = "ipv6"
	CIDR            Type = "cidr"
	Domain          Type = "domain"
	URL             Type = "url"
	Email           Type = "email"
	MD5             Type = "md5"
	SHA1            Type = "sha1"
	SHA256          Type = "sha256"
	CVE             Type = "cve"
	AttackTechnique Type = "attack_technique"
)

// Types lists every Type, in the order the documentation gives them.
var Types = []Type{IPv4, IPv6, CIDR, Domain, URL, Email, MD5, SHA1, SHA256, CVE, AttackTechnique}

// Flags say why an indicator, valid as it is, is unlikely to be hostile.
const (
	FlagPrivate       = "private"       // RFC 1918, RFC 4193
	FlagLoopback      = "loopback"      // 127.0.0.0/8, ::1
	FlagLinkLocal     = "link-local"    // 169.254.0.0/16, fe80::/10
	FlagMulticast     = "multicast"     // 224.0.0.0/4, ff00::/8
	FlagUnspecified   = "unspecified"   // 0.0.0.0, ::
	FlagDocumentation = "documentation" // RFC 5737, RFC 3849, RFC 9637, RFC 2606 names
	FlagShared        = "shared"        // 100.64.0.0/10 (RFC 6598)
	FlagBenchmark     = "benchmark"     // 198.18.0.0/15 (RFC 2544)
	FlagReserved      = "reserved"      // 0.0.0.0/8, 240.0.0.0/4 and the like
	FlagFileName      = "file-name-like"
)

// Finding is one indicator found in the text.
type Finding struct {
	Type  Type   `json:"type"`
	Value string `json:"value"`
	// Line is the 1-based number of the line it was found on.
	Line int `json:"line"`
	// Flag, when set, says the value is in a reserved, private or
	// documentation range, or (for a domain) looks like a file name.
	Flag string `json:"flag,omitempty"`
}

// Indicator returns the finding as an intel.Indicator; ok is false for the
// types that are not indicators of the mesh (email, cve,
// attack_technique).
func (f Finding) Indicator() (ind intel.Indicator, ok bool) {
	switch f.Type {
	case IPv4, IPv6, CIDR, Domain, URL, MD5, SHA1, SHA256:
		ind, err := intel.NewIndicator(intel.IndicatorType(f.Type), f.Value)
		return ind, err == nil
	}
	return intel.Indicator{}, false
}

// DefaultMaxLine is the longest piece of a line scanned at once. A longer
// line is scanned in pieces cut at whitespace where there is some, so only
// an indicator in a run of more than DefaultMaxLine bytes without
// whitespace can be missed.
const DefaultMaxLine = 1 << 20

// Extractor scans text for indicators. The zero value is ready to use.
type Extractor struct {
	// MaxLine overrides DefaultMaxLine when positive.
	MaxLine int
}

// Scan reads r to its end and calls emit for each finding, in the order of
// the text. Within one line a (type, value) pair is reported once. Scan
// stops at the first error of r or emit and returns it.
func (e *Extractor) Scan(r io.Reader, emit func(Finding) error) error {
	maxLine := e.MaxLine
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var s scanner
	var pending []byte
	line := 1
	for {
		chunk, err := br.ReadSlice('\n')
		pending = append(pending, chunk...)
		switch {
		case err == nil:
			if e := s.run(pending, line, emit); e != nil {
				return e
			}
			pending = pending[:0]
			line++
			continue
		case errors.Is(err, bufio.ErrBufferFull):
			for len(pending) >= maxLine {
				cut := cutPoint(pending[:maxLine])
				if e := s.run(pending[:cut], line, emit); e != nil {
					return e
				}
				pending = append(pending[:0], pending[cut:]...)
			}
			continue
		case errors.Is(err, io.EOF):
			if len(pending) > 0 {
				return s.run(pending, line, emit)
			}
			return nil
		default:
			return fmt.Errorf("read line %d: %w", line, err)
		}
	}
}

// cutPoint returns where to cut a piece of an over-long line: after its
// last whitespace, or at its end when it has none.
func cutPoint(b []byte) int {
	for i := len(b) - 1; i > 0; i-- {
		if isSpace(b[i]) {
			return i + 1
		}
	}
	return len(b)
}

// All returns every finding in text.
func All(text []byte) []Finding {
	var out []Finding
	var e Extractor
	_ = e.Scan(bytes.NewReader(text), func(f Finding) error {
		out = append(out, f)
		return nil
	})
	return out
}

// Claim marks: a byte of a line taken by a URL, or by another indicator.
const (
	claimURL   = 1
	claimOther = 2
)

// hit is a finding with its position in the line, for ordering.
type hit struct {
	pos int
	f   Finding
}

// scanner holds the buffers reused from line to line.
type scanner struct {
	// claimed marks the bytes of the line taken by an indicator found
	// so far, so that the shorter ones inside it are not reported.
	claimed []byte
	hits    []hit
	seen    map[seenKey]struct{}
}

// seenKey is a finding's type and value, reported once a line.
type seenKey struct {
	t Type
	v string
}

// run scans one line (or piece of a line) and emits its findings.
func (s *scanner) run(raw []byte, line int, emit func(Finding) error) error {
	text := normalize(raw)
	if cap(s.claimed) < len(text) {
		s.claimed = make([]byte, len(text))
	} else {
		s.claimed = s.claimed[:len(text)]
		clear(s.claimed)
	}
	s.hits = s.hits[:0]
	s.scanLine(text, line)
	if len(s.hits) == 0 {
		return nil
	}
	slices.SortStableFunc(s.hits, func(a, b hit) int { return a.pos - b.pos })
	if s.seen == nil {
		s.seen = make(map[seenKey]struct{})
	}
	clear(s.seen)
	for _, h := range s.hits {
		k := seenKey{h.f.Type, h.f.Value}
		if _, dup := s.seen[k]; dup {
			continue
		}
		s.seen[k] = struct{}{}
		if err := emit(h.f); err != nil {
			return err
		}
	}
	return nil
}

// add records a finding at pos.
func (s *scanner) add(pos int, t Type, v string, line int, flag string) {
	s.hits = append(s.hits, hit{pos, Finding{Type: t, Value: v, Line: line, Flag: flag}})
}

// claim marks [start, end) as taken.
func (s *scanner) claim(start, end int, url bool) {
	mark := byte(claimOther)
	if url {
		mark = claimURL
	}
	end = min(end, len(s.claimed))
	for i := start; i < end; i++ {
		s.claimed[i] = max(s.claimed[i], mark)
	}
}

// overlaps reports whether [start, end) meets a claimed byte; onlyURL
// reports whether every claimed byte it meets is a URL's.
func (s *scanner) overlaps(start, end int) (hit, onlyURL bool) {
	end = min(end, len(s.claimed))
	var m byte
	for i := start; i < end; i++ {
		m = max(m, s.claimed[i])
	}
	return m != 0, m == claimURL
}
