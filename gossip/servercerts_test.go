package gossip

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// The servers' topic is joined unsubscribed: a member publishing on it
// reaches the node only once it subscribes, and no more once it cancels;
// its refusals are counted apart from the certified topic's, both
// exported to one registry.
func TestServerCertsTopicFollowsSubscription(t *testing.T) {
	member := newRogue(t, nil, DefaultServerCertsTopic)
	roster := &switchRoster{}
	reg := prometheus.NewRegistry()
	n := startMeshNode(t, nil, newMemLog(), Options{Roster: roster, Registerer: reg})
	roster.set(rosterSet{n.id(): true, member.id(): true})
	if _, err := n.g.JoinCertified(CertifiedOptions{Handler: func(context.Context, peer.ID, []byte) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int32
	st, err := n.g.JoinServerCerts(func(_ context.Context, _ peer.ID, data []byte) error {
		if string(data) == "forged" {
			return verdict{reason: "not_author"}
		}
		handled.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Subscribed() {
		t.Fatal("joined subscribed")
	}
	connect(t, member.h, n.h)
	inTopic := func() bool { return slices.Contains(member.topic.ListPeers(), n.h.ID()) }
	if err := st.SetSubscribed(true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the node in the member's view of the topic", inTopic)
	member.publish(t, []byte("certificate"))
	waitFor(t, 10*time.Second, "the certificate handled", func() bool { return st.Accepted() == 1 })
	member.publish(t, []byte("forged"))
	waitFor(t, 10*time.Second, "the forgery refused", func() bool { return st.Refused()["not_author"] == 1 })
	if handled.Load() != 1 {
		t.Fatalf("handled %d", handled.Load())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "meshward_gossip_servercerts_refused_total"
	}
	if !found {
		t.Fatal("meshward_gossip_servercerts_refused_total not exported")
	}
	if err := st.SetSubscribed(false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the node out of the member's view of the topic", func() bool { return !inTopic() })
	if st.Subscribed() {
		t.Fatal("still subscribed")
	}
}
