package gossip

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
)

// admissionTopic describes, for TestAdmission, one place where envelopes
// are admitted: a GossipSub topic or anti-entropy.
type admissionTopic struct {
	label    string
	gossiped bool // rate limit and author check apply
	handler  bool // accepted envelopes reach the Handler
	// valid seals a good envelope of the topic's kind at ts.
	valid func(key ed25519.PrivateKey, seq uint64, ts time.Time) []byte
	// wrongKind seals a good envelope of a kind the topic refuses.
	wrongKind func(key ed25519.PrivateKey, seq uint64, ts time.Time) []byte
	// badPayload seals the topic's kind with a payload that fails its
	// check (malformed); bigPayload one over its bound (oversized), nil
	// where the kind has no bound of its own.
	badPayload, bigPayload func(key ed25519.PrivateKey, seq uint64, ts time.Time) []byte
	// future seals a sighting that claims to have been seen well after
	// its envelope was signed (from_future); nil where sightings are not
	// admitted.
	future func(key ed25519.PrivateKey, seq uint64, ts time.Time) []byte
}

// admissionRow is one message of TestAdmission and what must become of it.
type admissionRow struct {
	name   string
	author peer.ID // the GossipSub author (ignored by anti-entropy)
	data   []byte
	before func() // runs just before the message is admitted
	after  func()
	want   pubsub.ValidationResult
	reason string // "" means accepted
}

// TestAdmission runs the one admission pipeline on every topic (sightings,
// indicators, heartbeats) and on anti-entropy, with a message for every
// reason each can refuse one for, and checks the verdict, the counter of
// that topic and reason (and no other), and that only accepted envelopes
// are kept. The drops GossipSub decides itself are counted by the tracer
// under the same labels.
func TestAdmission(t *testing.T) {
	h, key := newTestHost(t)
	self := h.ID()
	_, otherKey := newKey(t)
	otherID := must(peer.Decode(intel.NodeID(otherKey.Public().(ed25519.PublicKey))))
	_, strangerKey := newKey(t)
	strangerID := must(peer.Decode(intel.NodeID(strangerKey.Public().(ed25519.PublicKey))))

	rec := newRecorder()
	reg := prometheus.NewRegistry()
	g := newTestGossip(t, h, Options{
		Handler:    rec,
		Roster:     rosterSet{self.String(): true, otherID.String(): true},
		Registerer: reg,
		Log:        newMemLog(),
		Heartbeats: &HeartbeatOptions{}, // listen only
		Indicators: &IndicatorOptions{},
		// One message per forwarding peer per test: every row comes from
		// a peer of its own, and the rate_limited rows from one whose
		// token is spent.
		RateLimit: 1e-9,
		RateBurst: 1,
	})
	now := time.Now()

	sealed := func(kind intel.Kind, payload any) func(ed25519.PrivateKey, uint64, time.Time) []byte {
		return func(k ed25519.PrivateKey, seq uint64, ts time.Time) []byte {
			var raw []byte
			var err error
			if b, ok := payload.([]byte); ok {
				raw, err = intel.Seal(k, kind, seq, ts, b)
			} else {
				raw, err = intel.SealJSON(k, kind, seq, ts, payload)
			}
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}
	}
	badSighting := testSighting("203.0.113.9")
	badSighting.Count = 0
	badReport := testReport("c2.example.net")
	badReport.Confidence = 101
	bigReport := testReport("c2.example.net")
	bigReport.Description = strings.Repeat("d", MaxIndicatorPayload)
	// Seen ten minutes after the envelope carrying it is signed.
	futureSighting := func(k ed25519.PrivateKey, seq uint64, ts time.Time) []byte {
		s := testSighting("203.0.113.8")
		s.FirstSeen, s.LastSeen = ts.Add(9*time.Minute), ts.Add(10*time.Minute)
		return sealed(intel.KindSighting, s)(k, seq, ts)
	}
	sighting := sealed(intel.KindSighting, testSighting("203.0.113.7"))
	report := sealed(intel.KindIndicator, testReport("c2.example.net"))
	heartbeat := sealed(intel.KindHeartbeat, Heartbeat{Version: "test", Site: "lab"})

	topics := []admissionTopic{
		{label: DefaultTopic, gossiped: true, handler: true, valid: sighting, wrongKind: heartbeat,
			badPayload: sealed(intel.KindSighting, badSighting), future: futureSighting},
		{label: DefaultIndicatorTopic, gossiped: true, handler: true, valid: report, wrongKind: sighting,
			badPayload: sealed(intel.KindIndicator, badReport), bigPayload: sealed(intel.KindIndicator, bigReport)},
		{label: DefaultHeartbeatTopic, gossiped: true, valid: heartbeat, wrongKind: sighting,
			badPayload: sealed(intel.KindHeartbeat, []byte("not json")),
			bigPayload: sealed(intel.KindHeartbeat, Heartbeat{Site: strings.Repeat("s", MaxHeartbeatPayload)})},
		{label: string(SyncProtocol), handler: true, valid: report, wrongKind: heartbeat,
			badPayload: sealed(intel.KindSighting, badSighting), bigPayload: sealed(intel.KindIndicator, bigReport),
			future: futureSighting},
	}
	specs := map[string]*topicSpec{
		DefaultTopic: g.sightings, DefaultIndicatorTopic: g.ind.spec,
		DefaultHeartbeatTopic: g.hb.spec, string(SyncProtocol): g.syncSpec,
	}

	seq := uint64(0)
	next := func() uint64 { seq++; return seq }
	var closing []admissionRow // shutting_down, run once everything else has
	for _, tp := range topics {
		spec := specs[tp.label]
		good := tp.valid(key, next(), now)
		flipped := bytes.Clone(tp.valid(key, next(), now))
		flipped[60] ^= 1 // a payload byte, after sealing
		// Sealed by otherKey, with our public key written over the origin.
		impostor := bytes.Clone(tp.valid(otherKey, next(), now))
		copy(impostor[2:34], key.Public().(ed25519.PublicKey))
		unknownVersion := bytes.Clone(tp.valid(key, next(), now))
		unknownVersion[0] = 9
		failing := tp.valid(key, next(), now)

		rows := []admissionRow{
			{name: "valid", author: self, data: good, want: pubsub.ValidationAccept},
			{name: "payload byte flipped", author: self, data: flipped, want: pubsub.ValidationReject, reason: ReasonBadSignature},
			{name: "signed by another key claiming ours", author: self, data: impostor, want: pubsub.ValidationReject, reason: ReasonBadSignature},
			{name: "garbage", author: self, data: []byte("hello"), want: pubsub.ValidationReject, reason: ReasonMalformed},
			{name: "oversized envelope", author: self, data: make([]byte, intel.MaxEnvelopeSize+1), want: pubsub.ValidationReject, reason: ReasonOversized},
			{name: "unknown version", author: self, data: unknownVersion, want: pubsub.ValidationReject, reason: ReasonUnknownVersion},
			{name: "not a member", author: strangerID, data: tp.valid(strangerKey, next(), now), want: pubsub.ValidationReject, reason: ReasonNotMember},
			{name: "from the future", author: self, data: tp.valid(key, next(), now.Add(time.Hour)), want: pubsub.ValidationIgnore, reason: ReasonStale},
			{name: "wrong kind", author: self, data: tp.wrongKind(key, next(), now), want: pubsub.ValidationReject, reason: ReasonUnexpectedKind},
			{name: "bad payload", author: self, data: tp.badPayload(key, next(), now), want: pubsub.ValidationReject, reason: ReasonMalformed},
			{name: "replay", author: self, data: good, want: pubsub.ValidationIgnore, reason: ReasonReplay},
			{name: "valid of another member", author: otherID, data: tp.valid(otherKey, next(), now), want: pubsub.ValidationAccept},
		}
		if tp.bigPayload != nil {
			rows = append(rows, admissionRow{name: "payload over its bound", author: self, data: tp.bigPayload(key, next(), now), want: pubsub.ValidationReject, reason: ReasonOversized})
		}
		if tp.future != nil {
			rows = append(rows, admissionRow{name: "sighting seen after its envelope was signed", author: self, data: tp.future(key, next(), now), want: pubsub.ValidationReject, reason: ReasonFromFuture})
		}
		if tp.gossiped {
			spent := peer.ID("spent-" + tp.label)
			rows = append(rows,
				admissionRow{name: "an hour old", author: self, data: tp.valid(key, next(), now.Add(-time.Hour)), want: pubsub.ValidationIgnore, reason: ReasonStale},
				admissionRow{name: "another node's envelope, published by us", author: self, data: tp.valid(otherKey, next(), now), want: pubsub.ValidationReject, reason: ReasonAuthorMismatch},
				admissionRow{name: "our envelope, published by another node", author: otherID, data: tp.valid(key, next(), now), want: pubsub.ValidationReject, reason: ReasonAuthorMismatch},
				admissionRow{name: "rate limited", author: self, data: tp.valid(key, next(), now),
					before: func() { g.limiter.allow(spent, now) }, want: pubsub.ValidationIgnore, reason: ReasonRateLimited},
			)
		} else {
			held := next()
			rows = append(rows,
				admissionRow{name: "two days old", author: self, data: tp.valid(key, next(), now.Add(-48*time.Hour)), want: pubsub.ValidationAccept},
				admissionRow{name: "held already", author: self, data: tp.valid(key, held, now),
					before: func() { g.have.add(self.String(), held) }, want: pubsub.ValidationIgnore, reason: ReasonReplay},
			)
		}
		if tp.handler {
			rows = append(rows, admissionRow{name: "handler fails", author: self, data: failing,
				before: func() { rec.setFail(errors.New("disk full")) }, after: func() { rec.setFail(nil) },
				want: pubsub.ValidationIgnore, reason: ReasonHandlerError})
		}
		closing = append(closing, admissionRow{name: tp.label + ": closing", author: self, data: tp.valid(key, next(), now),
			before: func() { g.Close() }, want: pubsub.ValidationIgnore, reason: ReasonShuttingDown})

		want := map[string]uint64{}
		for _, r := range rows {
			src := peer.ID("via " + tp.label + ": " + r.name)
			if r.reason == ReasonRateLimited {
				src = peer.ID("spent-" + tp.label)
			}
			if r.before != nil {
				r.before()
			}
			handled, beats := rec.total(), len(g.Heartbeats())
			got := g.admit(context.Background(), spec, r.data, src, r.author)
			if r.after != nil {
				r.after()
			}
			if got != r.want {
				t.Errorf("%s: %s: verdict %v, want %v", tp.label, r.name, got, r.want)
			}
			kept := rec.total() - handled
			if !tp.handler {
				kept = len(g.Heartbeats()) - beats
			}
			if wantKept := map[bool]int{true: 1, false: 0}[r.reason == ""]; kept != wantKept {
				t.Errorf("%s: %s: kept %d times, want %d", tp.label, r.name, kept, wantKept)
			}
			if r.reason != "" {
				want[r.reason]++
			}
			if got := spec.m.snapshot(); !maps.Equal(got, want) {
				t.Errorf("%s: %s: rejections %v, want %v", tp.label, r.name, got, want)
			}
		}
		for reason, n := range want {
			v := counterValue(t, reg, "meshward_gossip_rejected_total", map[string]string{"topic": tp.label, "reason": reason})
			if uint64(v) != n {
				t.Errorf("metric rejected{topic=%s,reason=%s} = %v, want %d", tp.label, reason, v, n)
			}
		}
		accepted := uint64(2)
		if !tp.gossiped {
			accepted = 3 // the two-day-old envelope too
		}
		if v := counterValue(t, reg, "meshward_gossip_accepted_total", map[string]string{"topic": tp.label}); uint64(v) != accepted || spec.m.acceptedN.Load() != accepted {
			t.Errorf("%s: accepted: metric %v, count %d; want %d", tp.label, v, spec.m.acceptedN.Load(), accepted)
		}
	}

	// Drops GossipSub decides before our validator, counted by the tracer
	// under the topic's label.
	for _, label := range []string{DefaultTopic, DefaultIndicatorTopic, DefaultHeartbeatTopic} {
		before := specs[label].m.snapshot()
		topic := label
		msg := &pubsub.Message{Message: &pb.Message{From: []byte(self), Topic: &topic}}
		for theirs, ours := range pubsubReasons {
			g.tracer.RejectMessage(msg, theirs)
			before[ours]++
		}
		g.tracer.UndeliverableMessage(msg)
		before[ReasonUndeliverable]++
		g.tracer.RejectMessage(msg, pubsub.RejectValidationFailed) // our own verdict, counted already
		if got := specs[label].m.snapshot(); !maps.Equal(got, before) {
			t.Errorf("%s: after GossipSub's drops: %v, want %v", label, got, before)
		}
	}

	for _, r := range closing {
		label, _, _ := strings.Cut(r.name, ": ")
		spec := specs[label]
		n := spec.m.snapshot()[ReasonShuttingDown]
		r.before()
		if got := g.admit(context.Background(), spec, r.data, "late", r.author); got != r.want {
			t.Errorf("%s: verdict %v, want %v", r.name, got, r.want)
		}
		if spec.m.snapshot()[ReasonShuttingDown] != n+1 {
			t.Errorf("%s: shutting_down not counted: %v", r.name, spec.m.snapshot())
		}
	}
}

// TestVerdictsCoverEveryReason: every reason our pipeline can decide has a
// verdict of its own, so none falls back to Ignore by accident.
func TestVerdictsCoverEveryReason(t *testing.T) {
	pubsubDecided := map[string]bool{}
	for _, r := range pubsubReasons {
		pubsubDecided[r] = true
	}
	pubsubDecided[ReasonUndeliverable] = true
	for _, r := range allReasons {
		if _, ok := verdicts[r]; !ok && !pubsubDecided[r] {
			t.Errorf("reason %s has no verdict", r)
		}
	}
}

// TestFreshness pins the two freshness modes at their edges.
func TestFreshness(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const skew = time.Minute
	for _, c := range []struct {
		mode freshness
		ts   time.Time
		ok   bool
	}{
		{freshWindow, now.Add(-skew), true},
		{freshWindow, now.Add(-skew - time.Millisecond), false},
		{freshWindow, now.Add(skew), true},
		{freshWindow, now.Add(skew + time.Millisecond), false},
		{freshNotAhead, now.Add(-365 * 24 * time.Hour), true},
		{freshNotAhead, now.Add(skew), true},
		{freshNotAhead, now.Add(skew + time.Millisecond), false},
	} {
		if err := c.mode.check(c.ts, now, skew); (err == nil) != c.ok {
			t.Errorf("mode %d, ts %s from now: err %v, want ok=%v", c.mode, c.ts.Sub(now), err, c.ok)
		}
	}
	if got := freshWindow.replayUntil(now.Add(-time.Second), now, skew); !got.Equal(now.Add(skew - time.Second)) {
		t.Errorf("window replayUntil = %s", got)
	}
	if got := freshNotAhead.replayUntil(now.Add(-time.Hour), now, skew); !got.Equal(now.Add(skew)) {
		t.Errorf("not-ahead replayUntil = %s", got)
	}
}

func ExampleConfig_Validate() {
	c := DefaultConfig()
	c.RateLimit = 0
	c.RateBurst = 0
	fmt.Println(c.Validate())
	// Output:
	// rate_limit: must be positive (messages per second per peer) (got 0)
	// rate_burst: must be at least 1 (got 0)
}

// TestGossipSubDecidedDrops: drops GossipSub decides before our validator
// runs are counted under the topic they came on. Here, on every topic, a
// message without a pubsub signature: our signature policy is strict.
func TestGossipSubDecidedDrops(t *testing.T) {
	for _, topic := range []string{DefaultTopic, DefaultIndicatorTopic, DefaultHeartbeatTopic} {
		t.Run(topic, func(t *testing.T) {
			l := newMemLog()
			victim := startMeshNode(t, nil, l, Options{Indicators: &IndicatorOptions{}, Heartbeats: &HeartbeatOptions{Interval: time.Hour}})
			r := newRogue(t, nil, topic, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor())
			r.reach(t, victim.h)
			rejected := map[string]func() map[string]uint64{
				DefaultTopic: victim.g.Rejected, DefaultIndicatorTopic: victim.g.IndicatorRejected,
				DefaultHeartbeatTopic: victim.g.HeartbeatRejected,
			}[topic]
			var raw []byte
			switch topic {
			case DefaultTopic:
				raw = seal(t, r.key, 1, time.Now())
			case DefaultIndicatorTopic:
				raw = sealReport(t, r.key, 1, time.Now(), testReport("a.example"))
			default:
				raw = must(intel.SealJSON(r.key, intel.KindHeartbeat, 1, time.Now(), Heartbeat{}))
			}
			// GossipSub may drop an early publish; send until one is counted.
			deadline := time.Now().Add(10 * time.Second)
			for rejected()[ReasonPubsubSignature] == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%s never counted: %v", ReasonPubsubSignature, rejected())
				}
				r.publish(t, raw)
				waitUntil(time.Second, func() bool { return rejected()[ReasonPubsubSignature] > 0 })
			}
			if got := bugRejections(rejected(), ReasonPubsubSignature); len(got) != 0 {
				t.Errorf("other rejections: %v", got)
			}
			if victim.g.Accepted()+victim.g.IndicatorAccepted() != 0 || l.count(r.id()) != 0 || len(victim.g.Heartbeats()) != 0 {
				t.Error("an unsigned message was accepted")
			}
		})
	}
}

func TestBugRejections(t *testing.T) {
	r := map[string]uint64{ReasonQueueFull: 3, ReasonThrottled: 1, ReasonRateLimited: 2, ReasonReplay: 1, ReasonBadSignature: 1}
	if got := bugRejections(r, ReasonReplay); !maps.Equal(got, map[string]uint64{ReasonBadSignature: 1}) {
		t.Errorf("bugRejections = %v", got)
	}
	if got := bugRejections(r); !maps.Equal(got, map[string]uint64{ReasonReplay: 1, ReasonBadSignature: 1}) {
		t.Errorf("bugRejections without extras = %v", got)
	}
	if len(r) != 5 {
		t.Error("bugRejections changed its argument")
	}
}
