package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func (f *Firewall) flush() error {
	f.batches.Add(1)
	if err := f.conn.Flush(); err != nil {
		f.errs.Add(1)
		return err
	}
	return nil
}

// Element changes do not go through the nftables library, which builds
// several small allocations per element: the batcher encodes the
// NEWSETELEM and DELSETELEM messages itself into one buffer per batch and
// sends the batch on the backend's own netlink socket. At a million
// elements that is the difference between seconds and a fraction of one
// in the process (the kernel's share is about half a microsecond per
// element). Each batch is one transaction, sized by elements (batchSize)
// and by bytes (what one sendmsg on the socket may carry); each message in
// it carries as many elements as its 16-bit element list length allows.

// Set indexes, in the order changes are sent (by set name).
const (
	iV4 uint8 = iota
	iV4Net
	iV6
	iV6Net
	numSets
)

var setNames = [numSets]string{setV4, setV4Net, setV6, setV6Net}

// batcher queues element changes and sends them in batches of at most
// batchSize elements, one transaction each.
type batcher struct {
	f   *Firewall
	ops [opAdd + 1][numSets][]op
}

type opKind uint8

// Deletions go first, so that a network can be replaced by a wider one;
// an element is replaced by deleting and re-adding it in one batch.
const (
	opDel opKind = iota
	opReplace
	opAdd
)

// op is one element change. ent.pfx is the address (a full-length
// prefix) or the network; ent is what the view holds after an add or a
// replace; key is a network's key (addresses need none).
type op struct {
	kind opKind
	set  uint8
	key  string
	ent  entry
	to   time.Duration // the element timeout of an add or a replace
}

// elems is how many set elements o touches in one direction: an address
// is one; a network is its start and, unless it reaches the top of the
// address space, its end.
func (o *op) elems() int {
	if o.set == iV4Net || o.set == iV6Net {
		if lastAddr(o.ent.pfx).Next().IsValid() {
			return 2
		}
	}
	return 1
}

func (o *op) weight() int {
	if o.kind == opReplace {
		return 2 * o.elems()
	}
	return o.elems()
}

func (b *batcher) queue(o op) { b.ops[o.kind][o.set] = append(b.ops[o.kind][o.set], o) }

// grow makes room for n more ops of kind in set.
func (b *batcher) grow(kind opKind, set uint8, n int) {
	if s := b.ops[kind][set]; cap(s)-len(s) < n {
		ns := make([]op, len(s), len(s)+n)
		copy(ns, s)
		b.ops[kind][set] = ns
	}
}

// Wire sizes of one element in a message, upper bounds: the list item,
// its key (nested data value), its timeout and its flags.
const (
	elemOverhead    = 4 + 4 + 4 + 12 + 8
	maxElemBytes    = elemOverhead + 16
	maxListBytes    = 0xffff - 64 // an attribute's length is 16 bits
	msgOverhead     = 16 + 4 + 4 + 64 + 4 + 32 + 4
	defaultSendBuf  = 4 << 20 // asked of the socket; it may grant less
	batchFrameBytes = 2 * (16 + 4)
)

// pending is one batch: runs of ops, n elements in all.
type pending struct {
	segs [][]op
	n    int
}

// plan splits the queued changes into batches: deletions first, then
// replacements, then additions, each batch keeping an op whole.
func (b *batcher) plan() []pending {
	f := b.f
	maxBytes := f.sendLimit()
	var (
		out      []pending
		cur      pending
		bytes    int
		segStart int
	)
	for kind := opDel; kind <= opAdd; kind++ {
		for set := range numSets {
			list := b.ops[kind][set]
			segStart = 0
			for i := range list {
				w := list[i].weight()
				if cur.n > 0 && (cur.n+w > f.cfg.batchSize || bytes+w*maxElemBytes > maxBytes) {
					if i > segStart {
						cur.segs = append(cur.segs, list[segStart:i])
					}
					out = append(out, cur)
					cur, bytes, segStart = pending{}, 0, i
				}
				cur.n += w
				bytes += w * maxElemBytes
			}
			if len(list) > segStart {
				cur.segs = append(cur.segs, list[segStart:])
			}
		}
	}
	if cur.n > 0 {
		out = append(out, cur)
	}
	return out
}

// encoded is a batch ready to send.
type encoded struct {
	pending
	msgs []netlink.Message
}

// done sends the queued changes, one transaction per batch, and records
// each committed batch in the view. With more than one batch the work is
// pipelined: while the kernel takes one batch (inside sendmsg, on this
// goroutine), one goroutine encodes the next and another records the one
// before in the view; done waits for both before it returns. On error the
// batches already committed stay applied and recorded.
func (b *batcher) done(ctx context.Context) error {
	batches := b.plan()
	switch len(batches) {
	case 0:
		return nil
	case 1:
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.f.commitBatch(b.encode(batches[0])); err != nil {
			return fmt.Errorf("apply batch of %d elements: %w", batches[0].n, err)
		}
		b.record(batches[0].segs)
		return nil
	}
	var wg sync.WaitGroup
	ready := make(chan encoded, 1)
	stop := make(chan struct{})
	wg.Go(func() {
		defer close(ready)
		for _, p := range batches {
			select {
			case ready <- encoded{p, b.encode(p)}:
			case <-stop:
				return
			}
		}
	})
	committed := make(chan [][]op, len(batches))
	wg.Go(func() {
		for segs := range committed {
			b.record(segs)
		}
	})
	var err error
	for e := range ready {
		if err = ctx.Err(); err != nil {
			break
		}
		if err = b.f.commitBatch(e.msgs); err != nil {
			err = fmt.Errorf("apply batch of %d elements: %w", e.n, err)
			break
		}
		committed <- e.segs
	}
	close(stop)
	close(committed)
	wg.Wait()
	return err
}

// encoder builds the messages of one batch in one buffer.
type encoder struct {
	buf   []byte
	spans [][2]int // each message's data: buf[from:to]
	types []uint16 // and its message type

	open     bool
	set      uint8
	listAt   int // offset of the open message's element list attribute
	msgStart int
	items    int
}

func (e *encoder) attrHeader(typ uint16) int {
	at := len(e.buf)
	e.buf = binary.NativeEndian.AppendUint16(e.buf, 0)
	e.buf = binary.NativeEndian.AppendUint16(e.buf, typ)
	return at
}

// closeAttr sets the length of the attribute at at, and pads.
func (e *encoder) closeAttr(at int) {
	binary.NativeEndian.PutUint16(e.buf[at:], uint16(len(e.buf)-at))
	for len(e.buf)%4 != 0 {
		e.buf = append(e.buf, 0)
	}
}

func (e *encoder) appendAttr(typ uint16, data []byte) {
	at := e.attrHeader(typ)
	e.buf = append(e.buf, data...)
	e.closeAttr(at)
}

func (e *encoder) startMsg(typ uint16, table string, set uint8) {
	e.msgStart = len(e.buf)
	e.types = append(e.types, typ)
	e.buf = append(e.buf, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	e.appendAttr(unix.NFTA_SET_ELEM_LIST_TABLE, append([]byte(table), 0))
	e.appendAttr(unix.NFTA_SET_ELEM_LIST_SET, append([]byte(setNames[set]), 0))
	e.listAt = e.attrHeader(unix.NFTA_SET_ELEM_LIST_ELEMENTS | unix.NLA_F_NESTED)
	e.open, e.set, e.items = true, set, 0
}

func (e *encoder) endMsg() {
	if !e.open {
		return
	}
	e.closeAttr(e.listAt)
	e.spans = append(e.spans, [2]int{e.msgStart, len(e.buf)})
	e.open = false
}

// element appends one element to the message of typ for set, starting a
// new message when the set changes or the element list is full.
func (e *encoder) element(typ uint16, table string, set uint8, key netip.Addr, timeout time.Duration, end bool) {
	if e.open && (e.set != set || e.types[len(e.types)-1] != typ || len(e.buf)-e.listAt+maxElemBytes > maxListBytes) {
		e.endMsg()
	}
	if !e.open {
		e.startMsg(typ, table, set)
	}
	e.items++
	item := e.attrHeader(uint16(e.items) | unix.NLA_F_NESTED)
	k := e.attrHeader(unix.NFTA_SET_ELEM_KEY | unix.NLA_F_NESTED)
	v := e.attrHeader(unix.NFTA_DATA_VALUE)
	if key.Is4() {
		a := key.As4()
		e.buf = append(e.buf, a[:]...)
	} else {
		a := key.As16()
		e.buf = append(e.buf, a[:]...)
	}
	e.closeAttr(v)
	e.closeAttr(k)
	if timeout > 0 {
		t := e.attrHeader(unix.NFTA_SET_ELEM_TIMEOUT)
		e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(timeout.Milliseconds()))
		e.closeAttr(t)
	}
	if end {
		fl := e.attrHeader(unix.NFTA_SET_ELEM_FLAGS)
		e.buf = binary.BigEndian.AppendUint32(e.buf, unix.NFT_SET_ELEM_INTERVAL_END)
		e.closeAttr(fl)
	}
	e.closeAttr(item)
}

// op appends the elements of o: an address, or a network's start and
// end. A deletion carries no timeout.
func (e *encoder) op(typ uint16, table string, o *op, timeout time.Duration) {
	if o.set == iV4 || o.set == iV6 {
		e.element(typ, table, o.set, o.ent.pfx.Addr(), timeout, false)
		return
	}
	pfx := o.ent.pfx
	e.element(typ, table, o.set, pfx.Masked().Addr(), timeout, false)
	if end := lastAddr(pfx).Next(); end.IsValid() {
		e.element(typ, table, o.set, end, 0, true)
	}
}

// messages returns the batch: begin, the element messages, end.
func (e *encoder) messages() []netlink.Message {
	e.endMsg()
	frame := func(t netlink.HeaderType) netlink.Message {
		return netlink.Message{
			Header: netlink.Header{Type: t, Flags: netlink.Request},
			Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
		}
	}
	msgs := make([]netlink.Message, 0, len(e.spans)+2)
	msgs = append(msgs, frame(unix.NFNL_MSG_BATCH_BEGIN))
	for i, sp := range e.spans {
		flags := netlink.Request | netlink.Acknowledge
		if e.types[i] == unix.NFT_MSG_NEWSETELEM {
			flags |= netlink.Create
		}
		msgs = append(msgs, netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8) | netlink.HeaderType(e.types[i]), Flags: flags},
			Data:   e.buf[sp[0]:sp[1]:sp[1]],
		})
	}
	return append(msgs, frame(unix.NFNL_MSG_BATCH_END))
}

// encode builds the messages of batch p: deletions before additions.
func (b *batcher) encode(p pending) []netlink.Message {
	e := encoder{buf: make([]byte, 0, p.n*maxElemBytes+(p.n/1000+8)*msgOverhead)}
	table := b.f.cfg.table
	for _, seg := range p.segs {
		for i := range seg {
			if o := &seg[i]; o.kind != opAdd {
				e.op(unix.NFT_MSG_DELSETELEM, table, o, 0)
			}
		}
	}
	for _, seg := range p.segs {
		for i := range seg {
			if o := &seg[i]; o.kind != opDel {
				e.op(unix.NFT_MSG_NEWSETELEM, table, o, o.to)
			}
		}
	}
	return e.messages()
}

// record writes a committed batch into the view.
func (b *batcher) record(segs [][]op) {
	f, v := b.f, b.f.view
	var added, removed, refreshed uint64
	nets := 0
	for _, seg := range segs {
		if len(seg) > 0 && (seg[0].set == iV4Net || seg[0].set == iV6Net) {
			nets += len(seg)
		}
	}
	if nets > idxBulk {
		v.netIdxOK = false // rebuilt when next needed
	}
	for _, seg := range segs {
		for i := range seg {
			o := &seg[i]
			isNet := o.set == iV4Net || o.set == iV6Net
			switch {
			case o.kind == opDel && isNet:
				v.delNet(o.key)
			case o.kind == opDel:
				v.delAddr(o.ent.pfx.Addr())
			case isNet:
				v.setNet(o.key, o.ent)
			default:
				v.setAddr(o.ent.pfx.Addr(), o.ent.expires)
			}
			switch o.kind {
			case opDel:
				removed++
			case opReplace:
				refreshed++
			case opAdd:
				added++
			}
		}
	}
	f.added.Add(added)
	f.removed.Add(removed)
	f.refreshed.Add(refreshed)
}

// commitBatch sends one batch as one transaction and reads every
// message's acknowledgement. The view was current at generation f.gen
// before the batch; the transaction must advance the generation by
// exactly one, or another writer committed in between and the view is
// marked dirty, so that the next check reads the sets back. A failed
// transaction marks it dirty too, and drops the socket, whose unread
// replies would confuse the next exchange.
func (f *Firewall) commitBatch(msgs []netlink.Message) error {
	f.batches.Add(1)
	c, err := f.nlConn()
	if err != nil {
		f.dirty = true
		return err
	}
	fail := func(err error) error {
		f.errs.Add(1)
		f.dirty = true
		f.dropConn()
		return err
	}
	if _, err := c.SendMessages(msgs); err != nil {
		return fail(fmt.Errorf("send: %w", err))
	}
	for want := len(msgs) - 2; want > 0; {
		replies, err := c.Receive()
		if err != nil {
			return fail(fmt.Errorf("receive acknowledgements: %w", err))
		}
		want -= len(replies)
	}
	g0 := f.gen
	g1, err := f.generation()
	if err != nil {
		f.dirty = true
		return err
	}
	if g1 != g0+1 {
		f.dirty = true
	}
	f.gen = g1
	return nil
}

// nlConn returns the backend's own netlink socket, dialling it first if
// need be, with as large a send buffer as the kernel grants: a batch is
// one sendmsg.
func (f *Firewall) nlConn() (*netlink.Conn, error) {
	if f.nl != nil {
		return f.nl, nil
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: f.cfg.netns})
	if err != nil {
		f.errs.Add(1)
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	// Error replies need not echo the failed message.
	_ = c.SetOption(netlink.CapAcknowledge, true)
	f.sendBuf = setSendBuffer(c, defaultSendBuf)
	f.nl = c
	return c, nil
}

// setSendBuffer asks for size bytes of send buffer (forcing it past the
// system maximum where the process may) and returns what one sendmsg may
// carry.
func setSendBuffer(c *netlink.Conn, size int) int {
	granted := 0
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size)
			}
			if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF); err == nil {
				granted = v
			}
		})
	}
	// The kernel reports twice what it counts as payload room, and
	// refuses a message longer than the buffer; keep a margin.
	if granted <= 0 {
		return 100 << 10
	}
	return granted / 2
}

// sendLimit is how many element bytes one batch may carry.
func (f *Firewall) sendLimit() int {
	if _, err := f.nlConn(); err != nil || f.sendBuf < 64<<10 {
		return 64 << 10
	}
	return f.sendBuf - 64<<10
}

// dropConn closes the backend's own netlink socket; the next use dials
// again.
func (f *Firewall) dropConn() {
	if f.nl != nil {
		_ = f.nl.Close()
		f.nl = nil
	}
}

var errNoGeneration = errors.New("read the ruleset generation: no generation in the reply")
