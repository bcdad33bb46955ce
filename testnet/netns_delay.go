//go:build linux

package testnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Where the kernel has no netem, a link is delayed by a queue of the
// lab's own: in the sending node's namespace an nftables rule (table ip
// meshward_lab, output hook) hands each packet for the other side to an
// NFQUEUE, and the lab gives each packet its verdict — accept, or drop
// with the link's loss — once the link's latency has passed. The packet
// waits in the kernel meanwhile; only its ID crosses to user space. The
// queue is FIFO and the latency constant, so packets keep their order.

// nfqueue's netlink protocol (linux/netfilter/nfnetlink_queue.h).
const (
	nfnlSubsysQueue = 3
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2

	nfqaCfgCmd      = 1
	nfqaCfgParams   = 2
	nfqaCfgQueueMax = 3

	nfqnlCfgCmdBind   = 1
	nfqnlCopyMeta     = 1
	nfqFlagBypass     = 0x01
	nfAccept          = 1
	nfDrop            = 0
	delayQueueMaxLen  = 1 << 16
	delayPendingLimit = 1 << 16
)

// linkDelay is one NFQUEUE of one namespace and its verdict loop.
type linkDelay struct {
	conn    *netlink.Conn
	queue   uint16
	latency time.Duration
	loss    float64

	pending chan delayed
	wg      sync.WaitGroup
	// Delayed, Dropped count packets released after the latency and
	// dropped for loss; Overflow those accepted at once because more
	// than delayPendingLimit waited.
	Delayed, Dropped, Overflow atomic.Uint64
}

type delayed struct {
	id  uint32
	due time.Time
}

// nfgen is struct nfgenmsg: family, version, resource ID (big endian).
func nfgen(queue uint16) []byte {
	return []byte{unix.AF_UNSPEC, 0, byte(queue >> 8), byte(queue)}
}

// startDelay binds queue in the namespace open as fd and starts its
// loops.
func startDelay(fd int, queue uint16, latency time.Duration, loss float64) (*linkDelay, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		return nil, fmt.Errorf("nfqueue: %w", err)
	}
	_ = c.SetReadBuffer(8 << 20)
	_ = c.SetOption(netlink.NoENOBUFS, true)
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_INET})
	ae.Bytes(nfqaCfgParams, []byte{0, 0, 0, 0, nfqnlCopyMeta})
	ae.Bytes(nfqaCfgQueueMax, binary.BigEndian.AppendUint32(nil, delayQueueMaxLen))
	attrs, err := ae.Encode()
	if err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(nfgen(queue), attrs...),
	}); err != nil {
		c.Close()
		return nil, fmt.Errorf("nfqueue: bind queue %d: %w", queue, err)
	}
	d := &linkDelay{conn: c, queue: queue, latency: latency, loss: loss, pending: make(chan delayed, delayPendingLimit)}
	d.wg.Add(2)
	go d.receive()
	go d.release()
	return d, nil
}

// receive reads the queued packets' IDs until the socket closes.
func (d *linkDelay) receive() {
	defer d.wg.Done()
	defer close(d.pending)
	for {
		msgs, err := d.conn.Receive()
		if err != nil {
			var op *netlink.OpError
			if errors.As(err, &op) && errors.Is(op.Err, unix.ENOBUFS) {
				continue
			}
			return // closed
		}
		now := time.Now()
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(nfnlSubsysQueue<<8|nfqnlMsgPacket) || len(m.Data) < 4 {
				continue
			}
			ad, err := netlink.NewAttributeDecoder(m.Data[4:])
			if err != nil {
				continue
			}
			for ad.Next() {
				if ad.Type() != nfqaPacketHdr || len(ad.Bytes()) < 4 {
					continue
				}
				id := binary.BigEndian.Uint32(ad.Bytes())
				select {
				case d.pending <- delayed{id: id, due: now.Add(d.latency)}:
				default:
					d.Overflow.Add(1)
					d.verdict(id, nfAccept)
				}
			}
		}
	}
}

// release gives each packet its verdict when its time comes.
func (d *linkDelay) release() {
	defer d.wg.Done()
	for p := range d.pending {
		if wait := time.Until(p.due); wait > 0 {
			time.Sleep(wait) // FIFO: the head is always the first due
		}
		if d.loss > 0 && rand.Float64() < d.loss {
			d.Dropped.Add(1)
			d.verdict(p.id, nfDrop)
			continue
		}
		d.Delayed.Add(1)
		d.verdict(p.id, nfAccept)
	}
}

func (d *linkDelay) verdict(id uint32, v uint32) {
	ae := netlink.NewAttributeEncoder()
	hdr := binary.BigEndian.AppendUint32(nil, v)
	ae.Bytes(nfqaVerdictHdr, binary.BigEndian.AppendUint32(hdr, id))
	attrs, err := ae.Encode()
	if err != nil {
		return
	}
	_, _ = d.conn.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgVerdict), Flags: netlink.Request},
		Data:   append(nfgen(d.queue), attrs...),
	})
}

// close unbinds (closing the socket releases the packets still queued:
// the kernel accepts them) and waits for the loops.
func (d *linkDelay) close() {
	d.conn.Close()
	d.wg.Wait()
}

// queueRules hands node ns's IPv4 packets for each destination of
// dsts[queue] to that NFQUEUE (bypassed, that is accepted, while no
// one listens).
func queueRules(fd int, dsts map[uint16][][4]byte) error {
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	t := c.AddTable(&nftables.Table{Name: labTable, Family: nftables.TableFamilyIPv4})
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "links", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	for q, list := range dsts {
		// struct xt_NFQ_info_v3 {u16 queuenum, queues_total, flags}, in
		// host order, padded to 8 bytes.
		info := make([]byte, 8)
		binary.NativeEndian.PutUint16(info[0:], q)
		binary.NativeEndian.PutUint16(info[2:], 1)
		binary.NativeEndian.PutUint16(info[4:], nfqFlagBypass)
		u := xt.Unknown(info)
		for _, dst := range list {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dst[:]},
				&expr.Counter{},
				&expr.Target{Name: "NFQUEUE", Rev: 3, Info: &u},
			}})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables queue rules: %w", err)
	}
	return nil
}
