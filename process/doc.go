// Package process measures how well the mesh's security process runs: per
// indicator, how long each stage took — from the first log line to the
// detection (detect), to every node holding the sighting (share), to the
// mesh-wide block's commit (decide), to its enforcement on every node
// (enforce), to an analyst's acknowledgement or an outside ticket taken up
// (triage), to the indicator blocked mesh-wide or its ticket closed
// (remediate) — and how long nodes stayed out of compliance. It checks
// those times against the operator's playbook (Expectations) and lists the
// breaches.
//
// The computation (Merge, Incident.Durations, Summarize, Evaluate,
// ParseEvent) is pure. The Recorder keeps what one node knows — its own
// Records, the outside events it was told of, the compliance spans it
// was fed — in the node's store, through the small Store interface that
// store.Store implements (store/process.go).
//
// "Every node" is known by merging: each node records its own receipt and
// enforcement times, by its own clock, and an Incident merges the Records
// of the nodes it was given; share and enforce complete when as many nodes
// as Expected hold the sighting and enforce the block. A node's own API
// merges its own Records only (Expected 1: the figures are "until this
// node held it"); `meshward report` merges the exports of every node it
// is pointed at. Times on different nodes come from different clocks, so
// a stage that would end before it began (clock skew) counts as zero.
//
// Stages other than detect are measured from the detection; detect from
// the first log line. Triage ends at the first acknowledgement of one of
// the indicator's detections or the first outside event about it whose
// kind ends in _acknowledged, _assigned, _opened, _closed or _resolved;
// remediate at the block enforced on every node or the first outside
// event ending in _closed or _resolved.
//
// A node's configuration:
//
//	process:
//	  evaluate_every: 30s
//	  expectations:
//	    - {name: ack-high, severity: high, stage: triage, within: 15m}
//	    - {name: block-fast, stage: enforce, within: 2m}
//
// An expectation covers the incidents of at least its severity (any when
// empty) and of its rule (any when empty). Its breaches are listed by GET
// /v1/process/breaches and counted once each in
// meshward_process_breaches_total{expectation}.
//
// Metrics: meshward_process_seconds{stage} (each stage of each indicator
// observed once, as this node saw it), meshward_process_breaches_total,
// meshward_process_events_total{result} and
// meshward_process_events_rejected_total{reason} (RejectReasons).
package process
