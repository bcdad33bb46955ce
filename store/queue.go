package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Durable FIFO queues, one per name (for example an outbound webhook):
//
//	qe/ <name> <seq>  -> <id length: 2 bytes> <id> <body>
//	qi/ <name> <id>   -> <seq> (8 bytes); makes Enqueue idempotent per id
//	qs/ <name>        -> last seq handed out (8 bytes)
//
// <name> is a one-byte length and the name.
var (
	prefixQueueEntry = []byte("qe/")
	prefixQueueIndex = []byte("qi/")
	prefixQueueSeq   = []byte("qs/")
)

// Limits of queue names, IDs and bodies.
const (
	maxQueueName = 255
	maxQueueID   = 1024
	maxQueueBody = 1 << 20
)

// Queue is a durable FIFO queue of (id, body) items in the store. Its
// methods are safe for concurrent use; items survive Close and reopening
// the store.
type Queue struct {
	s    *Store
	name string
	mu   sync.Mutex // serialises Enqueue, so that seq order is commit order
}

// Queue returns the durable queue called name (1 to 255 bytes).
func (s *Store) Queue(name string) (*Queue, error) {
	if len(name) == 0 || len(name) > maxQueueName {
		return nil, fmt.Errorf("queue name must be 1 to %d bytes, got %d", maxQueueName, len(name))
	}
	return &Queue{s: s, name: name}, nil
}

func (q *Queue) key(prefix []byte, rest []byte) []byte {
	b := appendOrigin(join(prefix), q.name)
	return append(b, rest...)
}

// Enqueue appends an item. Enqueueing an id that is already queued does
// nothing, so a caller that retries after an error cannot duplicate an
// item.
func (q *Queue) Enqueue(id string, body []byte) error {
	if len(id) == 0 || len(id) > maxQueueID {
		return fmt.Errorf("enqueue: id must be 1 to %d bytes, got %d", maxQueueID, len(id))
	}
	if len(body) > maxQueueBody {
		return fmt.Errorf("enqueue %s: body is %d bytes, limit %d", id, len(body), maxQueueBody)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	idxKey := q.key(prefixQueueIndex, []byte(id))
	seqKey := q.key(prefixQueueSeq, nil)
	err := q.s.write(func(txn *badger.Txn) error {
		if _, err := txn.Get(idxKey); err == nil {
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		last, err := getUint64(txn, seqKey)
		if err != nil {
			return err
		}
		seq := appendUint64(nil, last+1)
		v := binary.BigEndian.AppendUint16(nil, uint16(len(id)))
		v = append(append(v, id...), body...)
		if err := txn.Set(q.key(prefixQueueEntry, seq), v); err != nil {
			return err
		}
		if err := txn.Set(idxKey, seq); err != nil {
			return err
		}
		return txn.Set(seqKey, seq)
	})
	if err != nil {
		return wrap(fmt.Sprintf("enqueue %s on %s", id, q.name), err)
	}
	return nil
}

// Peek returns up to n of the oldest items, oldest first, without
// removing them: ids[i] and bodies[i] belong together.
func (q *Queue) Peek(n int) (ids []string, bodies [][]byte, err error) {
	sc := scan{prefix: q.key(prefixQueueEntry, nil), prefetch: min(max(n, 1), 100)}
	err = q.s.view(func(txn *badger.Txn) error {
		return sc.each(txn, func(item *badger.Item) error {
			if len(ids) >= n {
				return errStop
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) < 2 || len(v) < 2+int(binary.BigEndian.Uint16(v)) {
				return fmt.Errorf("malformed queue entry %q", item.Key())
			}
			l := int(binary.BigEndian.Uint16(v))
			ids = append(ids, string(v[2:2+l]))
			bodies = append(bodies, v[2+l:])
			return nil
		})
	})
	if err != nil {
		return nil, nil, wrap("peek "+q.name, err)
	}
	return ids, bodies, nil
}

// Ack removes the item id. Acking an id that is not queued is not an
// error.
func (q *Queue) Ack(id string) error {
	idxKey := q.key(prefixQueueIndex, []byte(id))
	err := q.s.write(func(txn *badger.Txn) error {
		item, err := txn.Get(idxKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		seq, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if err := txn.Delete(q.key(prefixQueueEntry, seq)); err != nil {
			return err
		}
		return txn.Delete(idxKey)
	})
	if err != nil {
		return wrap(fmt.Sprintf("ack %s on %s", id, q.name), err)
	}
	return nil
}

// Len returns the number of queued items.
func (q *Queue) Len() (int, error) {
	n, err := q.s.count(q.key(prefixQueueIndex, nil))
	return n, wrap("length of "+q.name, err)
}
