package kev

// How much being known exploited raises a CVE's priority.
const (
	// UnscoredBase stands for the CVSS base score of a CVE nobody scored:
	// the middle of the scale.
	UnscoredBase = 5.0
	// KEVBoost is added for a CVE in the KEV catalog.
	KEVBoost = 3.0
	// RansomwareBoost is added on top of KEVBoost when KEV knows the
	// CVE used in ransomware campaigns.
	RansomwareBoost = 2.0
	// MaxPriority is the highest priority: a 10.0 used by ransomware.
	MaxPriority = 10 + KEVBoost + RansomwareBoost
)

// Priority ranks a CVE for the operator, from 0 to MaxPriority: its CVSS
// base score, raised by KEVBoost when it is in KEV and by RansomwareBoost
// more when it is known used by ransomware.
type Priority struct {
	CVE        string  `json:"cve"`
	Value      float64 `json:"priority"`
	CVSS       float64 `json:"cvss"`
	Scored     bool    `json:"scored"`                 // false: CVSS is UnscoredBase
	Version    string  `json:"cvss_version,omitempty"` // of the score used
	KEV        bool    `json:"kev"`
	Ransomware bool    `json:"ransomware"`
}

// Rank computes the priority of a CVE; nvd and kev may be nil.
func Rank(cve string, nvd *NVD, kev *Catalog) Priority {
	p := Priority{CVE: cve, CVSS: UnscoredBase}
	if nvd != nil {
		if c, ok := nvd.Lookup(cve); ok {
			if s, ok := c.Best(); ok {
				p.CVSS, p.Scored, p.Version = s.Base, true, s.Version
			}
		}
	}
	p.Value = p.CVSS
	if kev != nil {
		if e, ok := kev.Lookup(cve); ok {
			p.KEV = true
			p.Value += KEVBoost
			if e.Ransomware {
				p.Ransomware = true
				p.Value += RansomwareBoost
			}
		}
	}
	return p
}
