package fencekit

/*
#include <stdlib.h>
#include <fencekit.h>
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
	"unsafe"
)

// Leadership is usable leadership: the token every write must carry, and until when the
// node may act.
type Leadership struct {
	Token Token
	// LeaseDeadline is the lease's end in nanoseconds on the node's clock (Node.Now).
	LeaseDeadline uint64
	// LeaseRemaining is the time left on the lease when the call returned.
	LeaseRemaining time.Duration
}

// Node is one member of a Raft group over TCP. Ask Leadership before each write: it is the
// truth; Events are news. Its methods are safe for concurrent use, Close included.
type Node struct {
	h handle[*C.fk_node]
	// done is closed by Close; the goroutines behind Events and Applied then exit (each
	// wait of theirs in the library holds the handle, so none outlives the node).
	done      chan struct{}
	closeDone sync.Once
	events    pumpOnce[Event]
	applied   pumpOnce[Applied]
}

// Start starts a node: opens its log in DataDir, listens on Listen and joins or forms the
// group. A bad field returns an error matching ErrInvalidConfig that names it (a Config with
// neither TLS nor Insecure, or both, names "tls"); TLS files that cannot be used ErrTLS,
// naming the file; a port in use ErrTransport; a data directory of another cluster or node
// ErrWrongCluster; one that another node holds ErrLocked.
func Start(config Config) (*Node, error) {
	text, err := config.JSON()
	if err != nil {
		return nil, err
	}
	return StartJSON(text, config.TieBreaker)
}

// StartJSON starts a node from its JSON configuration (ffi/README.md), with an optional
// tie-breaker policy (nil for none).
func StartJSON(config []byte, tieBreaker *Policy) (*Node, error) {
	useDefaultLogger()
	// Copied into C memory: the library reads the text as chars, and cgo forbids converting
	// a Go slice's pointer to one.
	text := C.CBytes(config)
	defer C.free(text)
	var ptr *C.fk_node
	err := tieBreaker.with(func(policy *C.fk_policy) error {
		return call(func() C.fk_status {
			return C.fk_node_start_with_policy((*C.char)(text), C.size_t(len(config)), policy, &ptr)
		})
	})
	if err != nil {
		return nil, err
	}
	n := &Node{done: make(chan struct{})}
	// A safety net for a node never closed; Close is the way (and cancels it).
	own(n, &n.h, ptr, freeNode)
	return n, nil
}

func freeNode(p *C.fk_node) { C.fk_node_free(p) }

// with runs body with the live node, or returns ErrClosed.
func (n *Node) with(body func(*C.fk_node) error) error {
	if n == nil {
		return ErrClosed
	}
	return n.h.with(body)
}

// Leadership is this node's usable leadership now, or an error matching ErrNotLeader (or
// ErrNodeFailed, with the cause, once the node failed). It is computed at the call, so a node
// paused past its lease is "not leader" the moment it wakes.
func (n *Node) Leadership() (Leadership, error) {
	var l C.fk_leadership
	err := n.with(func(ptr *C.fk_node) error {
		return call(func() C.fk_status { return C.fk_node_leadership(ptr, &l) })
	})
	if err != nil {
		return Leadership{}, err
	}
	return Leadership{
		Token:          Token{uint64(l.token.generation), uint64(l.token.holder)},
		LeaseDeadline:  uint64(l.lease_deadline_ns),
		LeaseRemaining: time.Duration(l.lease_remaining_ns),
	}, nil
}

// Now is the node's clock in nanoseconds: the clock of Leadership.LeaseDeadline.
func (n *Node) Now() (uint64, error) {
	var now C.uint64_t
	err := n.with(func(ptr *C.fk_node) error {
		return call(func() C.fk_status { return C.fk_node_now_ns(ptr, &now) })
	})
	return uint64(now), err
}

// leadershipPoll is how often WaitLeadership asks: a few times per election tick at the
// default timing, and cheap (a lock and a clock read in the library).
const leadershipPoll = 5 * time.Millisecond

// WaitLeadership waits until this node holds usable leadership and returns it, as Leadership
// would. It returns ctx.Err() when ctx ends first, and at once any error but ErrNotLeader
// (ErrNodeFailed, ErrClosed), or one matching ErrStopped once the node has stopped (Stop, or
// removed from the group): a node that cannot lead again is not waited for.
func (n *Node) WaitLeadership(ctx context.Context) (Leadership, error) {
	ticker := time.NewTicker(leadershipPoll)
	defer ticker.Stop()
	for polls := 0; ; polls++ {
		if err := ctx.Err(); err != nil {
			return Leadership{}, err
		}
		l, err := n.Leadership()
		if err == nil || !errors.Is(err, ErrNotLeader) {
			return l, err
		}
		// A stopped node answers "not leader" forever; its status says why, and costs more
		// than a leadership check, so it is read now and then.
		if polls%stoppedPolls == 0 {
			if status, serr := n.Status(); serr != nil {
				return Leadership{}, serr
			} else if status.Stopped {
				return Leadership{}, &Error{Status: C.FK_STATUS_STOPPED, Message: "the node was stopped"}
			}
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
}

// stoppedPolls is how many leadership polls WaitLeadership makes per look at whether the
// node stopped (every 100 ms).
const stoppedPolls = 20

// waitMillis is how long a library call that takes a timeout may wait under ctx: until its
// deadline, rounded up so that the library gives up no earlier than ctx; the longest wait 32
// bits of milliseconds hold (about 49 days) without a deadline.
func waitMillis(ctx context.Context) C.uint32_t {
	deadline, ok := ctx.Deadline()
	if !ok {
		return math.MaxUint32
	}
	left := time.Until(deadline)
	ms := (left + time.Millisecond - 1) / time.Millisecond
	return C.uint32_t(min(max(ms, 1), math.MaxUint32))
}

// await runs wait, a library call that waits (for the node's thread, or a commit), and
// returns its result, or ctx.Err() as soon as ctx ends. The library has no way to cancel such
// a call, so after a cancellation it finishes on its own goroutine, which then exits: each of
// these calls returns once the node's thread answers, and stopping the node (Stop, Close)
// makes every pending one return at once. A result and ctx's end that race go to the result.
func await[T any](ctx context.Context, wait func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if ctx.Done() == nil {
		// Never cancelled (context.Background): no goroutine needed.
		return wait()
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1) // buffered: an abandoned call's goroutine never blocks
	go func() {
		v, err := wait()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		select {
		case r := <-done:
			return r.v, r.err
		default:
			return zero, ctx.Err()
		}
	}
}

// Propose replicates data and waits for it to commit; it returns its log index. It fails at
// once on a follower (ErrNotLeader) or a failed node (ErrNodeFailed). When ctx ends first it
// returns ctx.Err(); at ctx's deadline the error matches both context.DeadlineExceeded and
// ErrTimeout. Either way the proposal may still commit later, and is then delivered on
// Applied like any other. Committed items arrive on Applied.
//
// The library cannot withdraw a proposal, so a cancelled Propose leaves its wait for the
// commit running until the outcome is known or the node stops (Close stops it): give ctx a
// deadline to bound it.
func (n *Node) Propose(ctx context.Context, data []byte) (uint64, error) {
	return await(ctx, func() (uint64, error) {
		var index C.uint64_t
		err := n.with(func(ptr *C.fk_node) error {
			return call(func() C.fk_status {
				d, l := byteArgs(data)
				return C.fk_node_propose(ptr, d, l, waitMillis(ctx), &index)
			})
		})
		if errors.Is(err, ErrTimeout) {
			// The library's wait ran out at ctx's deadline.
			return 0, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return uint64(index), err
	})
}

// ProposeBatch replicates every item of batch as one proposal: the library hands them to raft
// at once, so they reach the log in one Ready, are made durable by one sync on each node and
// are replicated in one append per follower. It waits for all of them to commit and returns
// the log index of the first; the others follow it in order, at consecutive indexes. The batch
// is refused whole, before anything is proposed, when it is empty or longer than 4096 items
// (ErrInvalidBatch), when an item is empty (ErrInvalidArgument), or on a follower
// (ErrNotLeader). ctx works as for Propose.
func (n *Node) ProposeBatch(ctx context.Context, batch [][]byte) (uint64, error) {
	return await(ctx, func() (uint64, error) {
		// The items and the pointer array go to C memory: C may not keep Go pointers in
		// memory of its own, and the library reads them while Go's collector runs.
		count := len(batch)
		total := 0
		for _, item := range batch {
			total += len(item)
		}
		var ptrs **C.uint8_t
		var lens *C.size_t
		var data unsafe.Pointer
		if count > 0 {
			ptrs = (**C.uint8_t)(C.malloc(C.size_t(count) * C.size_t(unsafe.Sizeof(uintptr(0)))))
			defer C.free(unsafe.Pointer(ptrs))
			lens = (*C.size_t)(C.malloc(C.size_t(count) * C.size_t(unsafe.Sizeof(C.size_t(0)))))
			defer C.free(unsafe.Pointer(lens))
			data = C.malloc(C.size_t(total + 1))
			defer C.free(data)
			ptrSlice := unsafe.Slice(ptrs, count)
			lenSlice := unsafe.Slice(lens, count)
			bytes := unsafe.Slice((*byte)(data), total+1)
			at := 0
			for i, item := range batch {
				copy(bytes[at:], item)
				ptrSlice[i] = (*C.uint8_t)(unsafe.Pointer(&bytes[at]))
				lenSlice[i] = C.size_t(len(item))
				at += len(item)
			}
		}
		var first C.uint64_t
		err := n.with(func(ptr *C.fk_node) error {
			return call(func() C.fk_status {
				return C.fk_node_propose_batch(ptr, ptrs, lens, C.size_t(count), waitMillis(ctx), &first)
			})
		})
		if errors.Is(err, ErrTimeout) {
			return 0, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return uint64(first), err
	})
}

// Transfer revokes this leader's lease, then hands leadership to node to. A target that
// cannot take it (this node, or a node that is not a voter: pick one of Status().Voters) is
// refused with an error matching ErrMembership that names it, before the lease is touched;
// to 0 with ErrInvalidToken; on a node that does not lead, ErrNotLeader. It waits for the
// node's thread to take the order; when ctx ends first it returns ctx.Err(), and the
// transfer may still happen.
func (n *Node) Transfer(ctx context.Context, to uint64) error {
	_, err := await(ctx, func() (struct{}, error) {
		return struct{}{}, n.with(func(ptr *C.fk_node) error {
			return call(func() C.fk_status { return C.fk_node_transfer(ptr, C.uint64_t(to)) })
		})
	})
	return err
}

// StepDown revokes this leader's lease and hands leadership to the most up-to-date other
// voter; it returns that voter's id. With no other voter it fails with ErrMembership. When
// ctx ends first it returns ctx.Err(), and the node may still step down.
func (n *Node) StepDown(ctx context.Context) (uint64, error) {
	return await(ctx, func() (uint64, error) {
		var successor C.uint64_t
		err := n.with(func(ptr *C.fk_node) error {
			return call(func() C.fk_status { return C.fk_node_step_down(ptr, &successor) })
		})
		return uint64(successor), err
	})
}

// PanicForTesting is test-only: it makes the node's thread panic, as a bug in fencekit or
// raft-rs would, so that a host's tests can check how it handles a failed node (Leadership,
// Propose, Transfer, StepDown and Compact fail with ErrNodeFailed, Events delivers EventLost with
// LostFailed if it led, Status says Failed). It returns before the thread panics. It is
// refused with ErrInvalidArgument unless the node was started with Config.TestHooks.
func (n *Node) PanicForTesting() error {
	return n.with(func(ptr *C.fk_node) error {
		return call(func() C.fk_status { return C.fk_node_panic_for_testing(ptr) })
	})
}

// Compact compacts the log: state is the host's state as of index, an index it has applied.
// It waits for the node's thread to write it; when ctx ends first it returns ctx.Err(), and
// the compaction may still happen.
func (n *Node) Compact(ctx context.Context, index uint64, state []byte) error {
	_, err := await(ctx, func() (struct{}, error) {
		return struct{}{}, n.with(func(ptr *C.fk_node) error {
			return call(func() C.fk_status {
				d, l := byteArgs(state)
				return C.fk_node_compact(ptr, C.uint64_t(index), d, l)
			})
		})
	})
	return err
}

// Stop stops the node: its lease ends, pending proposals fail, Events and Applied close once
// read to the end. Its log stays. A second Stop returns an error matching ErrStopped; Stop on
// a failed node releases its threads and returns one matching ErrNodeFailed, with the cause.
// It waits for the node's thread to exit; when ctx ends first it returns ctx.Err() and the
// node goes on stopping.
func (n *Node) Stop(ctx context.Context) error {
	_, err := await(ctx, func() (struct{}, error) { return struct{}{}, n.stop() })
	return err
}

func (n *Node) stop() error {
	return n.with(func(ptr *C.fk_node) error {
		return call(func() C.fk_status { return C.fk_node_stop(ptr) })
	})
}

// Close stops the node if it runs and frees it; the channels of Events and Applied close
// soon after. Closing twice is fine. It waits for the node's thread, and for every call
// still running in the library (a cancelled Propose's wait included, which the stop ends).
func (n *Node) Close() error {
	if n == nil {
		return nil
	}
	// Stopped first: calls waiting in the library (a proposal, the goroutines of Events and
	// Applied) return at once, so freeing is not held up by them.
	_ = n.stop()
	n.closeDone.Do(func() { close(n.done) })
	n.h.free(freeNode)
	return nil
}

// bufBytes copies out and releases a buffer the library filled.
func bufBytes(buf *C.fk_buf) []byte {
	defer C.fk_buf_release(buf)
	if buf.len == 0 {
		return []byte{}
	}
	return C.GoBytes(unsafe.Pointer(buf.data), C.int(buf.len))
}

// Status is the node's view of its group (a snapshot, for operators and dashboards).
func (n *Node) Status() (NodeStatus, error) {
	raw, err := n.StatusJSON()
	if err != nil {
		return NodeStatus{}, err
	}
	var status NodeStatus
	if err := json.Unmarshal(raw, &status); err != nil {
		return NodeStatus{}, fmt.Errorf("fencekit: the node's status does not parse: %w", err)
	}
	return status, nil
}

// StatusJSON is the node's status as the library writes it (fk_node_status_json): the JSON
// that Status reads, for a log or a dashboard, where a field that is null (no leader, no
// lease) stays null instead of reading as 0.
func (n *Node) StatusJSON() ([]byte, error) {
	var buf C.fk_buf
	err := n.with(func(ptr *C.fk_node) error {
		return call(func() C.fk_status { return C.fk_node_status_json(ptr, &buf) })
	})
	if err != nil {
		return nil, err
	}
	return bufBytes(&buf), nil
}

// NodeStatus is a node's view at one instant (fields as fk_node_status_json names them).
type NodeStatus struct {
	ID   uint64 `json:"id"`
	Term uint64 `json:"term"`
	// Role is "follower", "pre-candidate", "candidate" or "leader" (Raft's; usable
	// leadership needs the lease too: LeadingGeneration). A stopped or failed node takes no
	// part: its role is "follower", with no Leader and no LeadingGeneration (look at Stopped
	// and Failed).
	Role string `json:"role"`
	// Leader is the leader this node knows of, 0 for none.
	Leader uint64 `json:"leader"`
	// LeadingGeneration is the generation this node leads with a lease, 0 when it does not.
	LeadingGeneration uint64 `json:"leading_generation"`
	// LeaseRemainingMS is the time left on the lease, in milliseconds (0 without one).
	LeaseRemainingMS float64 `json:"lease_remaining_ms"`
	Commit           uint64  `json:"commit"`
	Applied          uint64  `json:"applied"`
	// LastQuorumContactMS is, for a leader, the age of the latest heartbeat round a quorum
	// acknowledged; for a follower, the time since it heard from the leader.
	LastQuorumContactMS float64  `json:"last_quorum_contact_ms"`
	Voters              []uint64 `json:"voters"`
	Learners            []uint64 `json:"learners"`
	// EventsDropped counts events the host did not read in time.
	EventsDropped uint64 `json:"events_dropped"`
	// RefusedMessages counts peer messages refused at the step boundary: messages no honest
	// member sends. Non-zero means a misbehaving or hostile peer.
	RefusedMessages uint64 `json:"refused_messages"`
	// LastRefusal is the latest refusal, naming the peer and the reason ("" for none).
	LastRefusal string `json:"last_refusal"`
	// Failed says the node failed (a panic on its thread, a log it could not write): it
	// reports no leadership and every call fails with ErrNodeFailed. Failure is why.
	Failed  bool   `json:"failed"`
	Failure string `json:"failure"`
	// Stopped says the node was stopped (Stop or Close): it leads nothing and knows no leader.
	Stopped bool `json:"stopped"`
	// AtNS is when the view was taken, on the node's clock.
	AtNS uint64 `json:"at_ns"`
}
