package controller

import (
	"container/heap"
	"maps"
	"sync"
	"time"
)

// queue is a deduplicating work queue with delayed adds, after the model of
// client-go's workqueue: a key added many times before it is taken is worked
// on once, and a key is never handed to two workers at the same time; a key
// added while it is being worked on is handed out again after Done.
//
// Safe for concurrent use. The zero value is not usable; call newQueue.
type queue[K comparable] struct {
	mu    sync.Mutex
	cond  *sync.Cond
	items []K
	// urgent keys are handed out before items: new streams' first pulls
	// do not wait behind a resync's or retries' work. A key may sit in
	// both lanes; Get skips a copy whose key is no longer due.
	urgent []K
	// dirty holds the keys needing work, each with when it was queued
	// (nanoseconds after base) shifted left by one, the low bit set once
	// the key is in the urgent lane: one map, for a queue may hold every
	// stream of a large group after a burst.
	dirty      map[K]int64
	base       time.Time
	processing map[K]struct{}
	delayed    delayHeap[K]
	waiting    map[K]time.Time // the earliest pending delayed add of each key
	timer      *time.Timer
	shutdown   bool
	now        func() time.Time
	// peak is the most keys waiting since dirty was last made: maps
	// never shrink, so after a burst drains it is made anew.
	peak int
	// peakWaiting is the same for waiting.
	peakWaiting int
	// onAdd and onGet, when set, observe queue traffic for metrics: a key
	// queued, and a key handed out after waiting.
	onAdd func()
	onGet func(waited time.Duration)
}

func newQueue[K comparable]() *queue[K] {
	q := &queue[K]{
		dirty:      make(map[K]int64),
		base:       time.Now(),
		processing: make(map[K]struct{}),
		waiting:    make(map[K]time.Time),
		now:        time.Now,
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// setHooks installs the metric observers onAdd and onGet.
func (q *queue[K]) setHooks(onAdd func(), onGet func(time.Duration)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.onAdd, q.onGet = onAdd, onGet
}

// Add marks k as needing work.
func (q *queue[K]) Add(k K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(k)
}

func (q *queue[K]) addLocked(k K) {
	if q.shutdown {
		return
	}
	if _, ok := q.dirty[k]; ok {
		return
	}
	q.dirty[k] = int64(q.now().Sub(q.base)) << 1
	q.peak = max(q.peak, len(q.dirty))
	if q.onAdd != nil {
		q.onAdd()
	}
	if _, ok := q.processing[k]; ok {
		return // handed out again by Done
	}
	q.items = append(q.items, k)
	q.cond.Signal()
}

// AddUrgent marks k as needing work before the keys added with Add. A key
// already in the urgent lane is not put there twice: every event about a
// stream waiting for its first pulls asks for it again, and the lane would
// grow with the events instead of with the streams.
func (q *queue[K]) AddUrgent(k K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	v, ok := q.dirty[k]
	if !ok {
		v = int64(q.now().Sub(q.base)) << 1
		q.peak = max(q.peak, len(q.dirty)+1)
		if q.onAdd != nil {
			q.onAdd()
		}
	}
	if v&1 != 0 {
		return // in the urgent lane already
	}
	if _, ok := q.processing[k]; ok {
		q.dirty[k] = v
		return // handed out again by Done
	}
	q.dirty[k] = v | 1
	q.urgent = append(q.urgent, k)
	q.cond.Signal()
}

// AddAfter adds k once d has passed. Of several pending delayed adds of one
// key, the earliest wins.
func (q *queue[K]) AddAfter(k K, d time.Duration) {
	if d <= 0 {
		q.Add(k)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := q.now().Add(d)
	if prev, ok := q.waiting[k]; ok && !at.Before(prev) {
		return
	}
	q.waiting[k] = at
	q.peakWaiting = max(q.peakWaiting, len(q.waiting))
	heap.Push(&q.delayed, delayed[K]{key: k, at: at})
	q.armLocked()
}

// armLocked makes sure a timer fires when the earliest delayed item is due.
func (q *queue[K]) armLocked() {
	if len(q.delayed) == 0 {
		return
	}
	d := q.delayed[0].at.Sub(q.now())
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.promote)
		return
	}
	q.timer.Reset(d)
}

// promote moves every due delayed item into the queue.
func (q *queue[K]) promote() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for len(q.delayed) > 0 && !q.delayed[0].at.After(now) {
		it := heap.Pop(&q.delayed).(delayed[K])
		if at, ok := q.waiting[it.key]; ok && at.Equal(it.at) {
			delete(q.waiting, it.key)
			q.addLocked(it.key)
		}
	}
	if len(q.delayed) == 0 {
		q.delayed = nil
	}
	if q.peakWaiting > shrinkAfter && len(q.waiting) <= q.peakWaiting/shrinkBy {
		waiting := make(map[K]time.Time, len(q.waiting))
		maps.Copy(waiting, q.waiting)
		q.waiting, q.peakWaiting = waiting, len(waiting)
	}
	if !q.shutdown {
		q.armLocked()
	}
}

// Get blocks until a key is ready or the queue is shut down, in which case
// ok is false. The caller must call Done(k) when finished with k.
func (q *queue[K]) Get() (k K, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.urgent) == 0 && len(q.items) == 0 && !q.shutdown {
			q.cond.Wait()
		}
		if q.shutdown {
			return k, false
		}
		lane := &q.items
		if len(q.urgent) > 0 {
			lane = &q.urgent
		}
		k = (*lane)[0]
		var zero K
		(*lane)[0] = zero
		*lane = (*lane)[1:]
		if len(*lane) == 0 {
			// An empty lane's slice still holds its whole array: after
			// a burst, 8 MiB at 10,000 streams × 16 members.
			*lane = nil
		}
		_, due := q.dirty[k]
		_, busy := q.processing[k]
		if due && !busy {
			break
		}
		// A copy of a key handed out from the other lane, or being
		// worked on (Done queues it again).
	}
	q.processing[k] = struct{}{}
	if v, ok := q.dirty[k]; ok && q.onGet != nil {
		q.onGet(q.now().Sub(q.base) - time.Duration(v>>1))
	}
	delete(q.dirty, k)
	if q.peak > shrinkAfter && len(q.dirty) <= q.peak/shrinkBy {
		// Maps never shrink: once a burst has drained to a few keys, the
		// map is made anew for them.
		dirty := make(map[K]int64, len(q.dirty))
		maps.Copy(dirty, q.dirty)
		q.dirty, q.peak = dirty, len(dirty)
	}
	return k, true
}

// A queue whose map held more than shrinkAfter keys makes it anew once it
// holds a shrinkBy-th of them.
const (
	shrinkAfter = 1024
	shrinkBy    = 16
)

// Done marks k as finished; if it was added meanwhile it is queued again.
func (q *queue[K]) Done(k K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, k)
	if _, ok := q.dirty[k]; ok {
		q.items = append(q.items, k)
		q.cond.Signal()
	}
}

// Len returns the number of keys waiting to be handed out (delayed ones not
// counted).
func (q *queue[K]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) + len(q.urgent)
}

// Delayed returns the number of keys waiting for their delay to pass.
func (q *queue[K]) Delayed() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting)
}

// ShutDown wakes every Get; queued and delayed keys are dropped.
func (q *queue[K]) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	q.items, q.urgent = nil, nil
	q.delayed = nil
	clear(q.waiting)
	if q.timer != nil {
		q.timer.Stop()
	}
	q.cond.Broadcast()
}

type delayed[K comparable] struct {
	key K
	at  time.Time
}

type delayHeap[K comparable] []delayed[K]

func (h delayHeap[K]) Len() int           { return len(h) }
func (h delayHeap[K]) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h delayHeap[K]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap[K]) Push(x any)        { *h = append(*h, x.(delayed[K])) }
func (h *delayHeap[K]) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = delayed[K]{} // the key is not kept by the array
	*h = old[:len(old)-1]
	return it
}
