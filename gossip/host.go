package gossip

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	libp2pyamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	cmgr "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-yamux/v5"
)

// DefaultListenAddrs are the addresses a host listens on when HostConfig
// names none: TCP and QUIC on port 7946 on every IPv4 interface.
var DefaultListenAddrs = []string{"/ip4/0.0.0.0/tcp/7946", "/ip4/0.0.0.0/udp/7946/quic-v1"}

// Connection manager defaults: above ConnHigh connections the host trims
// unprotected connections down to ConnLow; new connections are exempt for
// connGrace.
const (
	DefaultConnLow  = 160
	DefaultConnHigh = 192
	connGrace       = time.Minute
)

// Resource manager limits on connections, in place of libp2p's, which
// scale with the machine's memory (about 250 inbound on 24 GiB). A raft
// server of a mesh of a thousand sites is dialed by each site that
// joins, catches up or proposes, faster than the connection manager
// trims idle connections (they are exempt for connGrace): under
// libp2p's limits it refused the sites past the 250th. The connection
// manager still trims above DefaultConnHigh, and the mesh's gater still
// closes strangers' connections once their grace ends.
const (
	// maxConns bounds every connection of the host; maxConnsInbound
	// those others opened.
	maxConns        = 4096
	maxConnsInbound = 2048
	// maxTransientInbound bounds the inbound connections still being
	// set up (handshakes under way).
	maxTransientInbound = 256
)

// resourceManager is libp2p's resource manager with its default limits
// scaled to the machine, but maxConns and maxConnsInbound connections.
func resourceManager() (network.ResourceManager, error) {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	limits := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns:         rcmgr.LimitVal(maxConns),
			ConnsInbound:  rcmgr.LimitVal(maxConnsInbound),
			ConnsOutbound: rcmgr.LimitVal(maxConns),
		},
		Transient: rcmgr.ResourceLimits{
			Conns:        rcmgr.LimitVal(2 * maxTransientInbound),
			ConnsInbound: rcmgr.LimitVal(maxTransientInbound),
		},
	}.Build(scaling.AutoScale())
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	return rm, nil
}

// HostConfig configures NewHost.
type HostConfig struct {
	// Key is the node identity (see LoadOrCreateIdentity). Required.
	Key crypto.PrivKey
	// ListenAddrs are multiaddrs to listen on; nil means DefaultListenAddrs.
	// Only /tcp and /udp/.../quic-v1 addresses can be served.
	ListenAddrs []string
	// ConnLow and ConnHigh are the connection manager's watermarks; zero
	// means DefaultConnLow and DefaultConnHigh.
	ConnLow, ConnHigh int
	// ConnectionGater, when set, vets every connection (for example a
	// conngater.BasicConnectionGater that blocks peers); nil admits all.
	ConnectionGater connmgr.ConnectionGater
	// MuxerKeepAlive is how often yamux pings an idle connection to find
	// it dead, and MuxerMeasureRTT how often it measures each
	// connection's round trip (for its flow control windows); zero means
	// yamux's 30 s. Each wakes both ends of every connection: a simulated
	// mesh of hundreds of nodes on one machine, on loopback, slows them.
	MuxerKeepAlive, MuxerMeasureRTT time.Duration
}

// NewHost builds the node's libp2p host: TCP and QUIC transports only
// (giving any Transport option replaces libp2p's default set), Noise and
// TLS security, yamux, relay disabled, libp2p's own Prometheus metrics
// disabled (they would go to the global registry), and a connection manager.
// The caller closes the host.
func NewHost(cfg HostConfig) (host.Host, error) {
	if cfg.Key == nil {
		return nil, errors.New("new host: HostConfig.Key is required")
	}
	addrs := cfg.ListenAddrs
	if addrs == nil {
		addrs = DefaultListenAddrs
	}
	low, high := cfg.ConnLow, cfg.ConnHigh
	if low == 0 {
		low = DefaultConnLow
	}
	if high == 0 {
		high = DefaultConnHigh
	}
	if low < 0 || high < low {
		return nil, fmt.Errorf("new host: connection watermarks low=%d high=%d: want 0 <= low <= high", low, high)
	}
	cm, err := cmgr.NewConnManager(low, high, cmgr.WithGracePeriod(connGrace))
	if err != nil {
		return nil, fmt.Errorf("new host: connection manager: %w", err)
	}
	rm, err := resourceManager()
	if err != nil {
		cm.Close()
		return nil, fmt.Errorf("new host: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(cfg.Key),
		libp2p.ListenAddrStrings(addrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.UserAgent("meshward"),
	}
	if cfg.ConnectionGater != nil {
		opts = append(opts, libp2p.ConnectionGater(cfg.ConnectionGater))
	}
	if cfg.MuxerKeepAlive < 0 || cfg.MuxerMeasureRTT < 0 {
		cm.Close()
		return nil, fmt.Errorf("new host: muxer intervals keep-alive %s, measure-rtt %s: want 0 (yamux's) or more", cfg.MuxerKeepAlive, cfg.MuxerMeasureRTT)
	}
	if cfg.MuxerKeepAlive > 0 || cfg.MuxerMeasureRTT > 0 {
		yc := yamux.Config(*libp2pyamux.DefaultTransport)
		if cfg.MuxerKeepAlive > 0 {
			yc.KeepAliveInterval = cfg.MuxerKeepAlive
		}
		if cfg.MuxerMeasureRTT > 0 {
			yc.MeasureRTTInterval = cfg.MuxerMeasureRTT
		}
		opts = append(opts, libp2p.Muxer(libp2pyamux.ID, (*libp2pyamux.Transport)(&yc)))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		cm.Close()
		rm.Close()
		return nil, fmt.Errorf("new host: %w", err)
	}
	return h, nil
}
