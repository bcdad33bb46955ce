package nft

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/google/nftables"
)

func (f *Firewall) flush() error {
	f.batches.Add(1)
	if err := f.conn.Flush(); err != nil {
		f.errs.Add(1)
		return err
	}
	return nil
}

// batcher queues element changes and sends them in batches of at most
// batchSize elements, one transaction each.
type batcher struct {
	f   *Firewall
	ops []op
}

type opKind int

// Deletions go first, so that a network can be replaced by a wider one;
// an element is replaced by deleting and re-adding it in one batch.
const (
	opDel opKind = iota
	opReplace
	opAdd
)

type op struct {
	kind opKind
	net  bool // an element of an interval set
	set  *nftables.Set
	key  string
	ent  entry // what the view holds after an add or replace
	els  []nftables.SetElement
}

func (o op) weight() int {
	if o.kind == opReplace {
		return 2 * len(o.els)
	}
	return len(o.els)
}

func (b *batcher) queue(o op) { b.ops = append(b.ops, o) }

// done sends the queued changes: deletions first, then replacements,
// then additions, each batch keeping an op whole. Consecutive changes to
// the same set share netlink messages.
func (b *batcher) done(ctx context.Context) error {
	ops := slices.Clone(b.ops)
	slices.SortStableFunc(ops, func(x, y op) int {
		if c := cmp.Compare(x.kind, y.kind); c != 0 {
			return c
		}
		return cmp.Compare(x.set.Name, y.set.Name)
	})
	var batch []op
	n := 0
	for _, o := range ops {
		if n > 0 && n+o.weight() > b.f.cfg.batchSize {
			if err := b.send(ctx, batch, n); err != nil {
				return err
			}
			batch, n = nil, 0
		}
		batch = append(batch, o)
		n += o.weight()
	}
	if n == 0 {
		return nil
	}
	return b.send(ctx, batch, n)
}

// send commits one batch (deletions before additions) and records it in
// the view.
func (b *batcher) send(ctx context.Context, batch []op, n int) error {
	f := b.f
	if err := ctx.Err(); err != nil {
		return err
	}
	g0, err := f.generation()
	if err != nil {
		f.dirty = true
		return err
	}
	for _, del := range []bool{true, false} {
		var (
			cur *nftables.Set
			msg []nftables.SetElement
		)
		sendMsg := func() error {
			if len(msg) == 0 {
				return nil
			}
			var err error
			if del {
				err = f.conn.SetDeleteElements(cur, msg)
			} else {
				err = f.conn.SetAddElements(cur, msg)
			}
			msg = nil
			return err
		}
		for _, o := range batch {
			if (del && o.kind == opAdd) || (!del && o.kind == opDel) {
				continue
			}
			els := o.els
			if del && o.kind == opReplace {
				els = withoutTimeout(els)
			}
			// Keep an interval's start and end in one message.
			if cur != o.set || len(msg)+len(els) > elementsPerMessage {
				if err := sendMsg(); err != nil {
					f.dirty = true
					return err
				}
				cur = o.set
			}
			msg = append(msg, els...)
		}
		if err := sendMsg(); err != nil {
			f.dirty = true
			return err
		}
	}
	if err := f.commit(g0); err != nil {
		return fmt.Errorf("apply batch of %d elements: %w", n, err)
	}
	v := f.view
	for _, o := range batch {
		m := v.addrs
		if o.net {
			m = v.nets
		}
		switch o.kind {
		case opDel:
			delete(m, o.key)
			f.removed.Add(1)
		case opReplace:
			m[o.key] = o.ent
			f.refreshed.Add(1)
		case opAdd:
			m[o.key] = o.ent
			f.added.Add(1)
		}
	}
	return nil
}

func withoutTimeout(els []nftables.SetElement) []nftables.SetElement {
	out := slices.Clone(els)
	for i := range out {
		out[i].Timeout = 0
	}
	return out
}

// commit sends the queued batch as one transaction. g0 is the ruleset
// generation read before the batch was queued: if it is not the view's,
// or the transaction did not advance it by exactly one, another writer
// committed in between and the view is marked dirty, so that the next
// check reads the sets back. A failed transaction marks it dirty too.
func (f *Firewall) commit(g0 uint32) error {
	if err := f.flush(); err != nil {
		f.dirty = true
		return err
	}
	g1, err := f.generation()
	if err != nil {
		f.dirty = true
		return err
	}
	if g0 != f.gen || g1 != g0+1 {
		f.dirty = true
	}
	f.gen = g1
	return nil
}
