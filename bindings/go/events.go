package fencekit

/*
#include <fencekit.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
)

// EventKind is what an Event reports.
type EventKind uint32

// The kinds of event (FK_EVENT_*).
const (
	// EventElected: this node became usable leader (Token, LeaseDeadline).
	EventElected EventKind = C.FK_EVENT_ELECTED
	// EventLost: this node's usable leadership ended (Token, LostReason).
	EventLost EventKind = C.FK_EVENT_LOST
	// EventLeaderChanged: the leader this node knows of changed (Leader, 0 for none; Term).
	EventLeaderChanged EventKind = C.FK_EVENT_LEADER_CHANGED
	// EventMembershipChanged: a membership change was applied (Status lists the members).
	EventMembershipChanged EventKind = C.FK_EVENT_MEMBERSHIP_CHANGED
)

func (k EventKind) String() string {
	switch k {
	case EventElected:
		return "elected"
	case EventLost:
		return "lost"
	case EventLeaderChanged:
		return "leader changed"
	case EventMembershipChanged:
		return "membership changed"
	}
	return fmt.Sprintf("EventKind(%d)", uint32(k))
}

// LostReason is why leadership ended.
type LostReason uint32

// The reasons leadership ends (FK_LOST_*).
const (
	// LostLeaseExpired: no quorum acknowledged a heartbeat round in time.
	LostLeaseExpired LostReason = C.FK_LOST_LEASE_EXPIRED
	// LostSteppedDown: Raft stepped down (a higher term, or no quorum).
	LostSteppedDown LostReason = C.FK_LOST_STEPPED_DOWN
	// LostTransferring: the lease was revoked to hand leadership over.
	LostTransferring LostReason = C.FK_LOST_TRANSFERRING
	// LostRemoved: this node was removed from the membership.
	LostRemoved LostReason = C.FK_LOST_REMOVED
	// LostStopped: the node stopped.
	LostStopped LostReason = C.FK_LOST_STOPPED
	// LostFailed: the node failed (a panic on its thread, a log it could not write); every
	// later call fails with ErrNodeFailed and NodeStatus.Failure says why.
	LostFailed LostReason = C.FK_LOST_FAILED
)

func (r LostReason) String() string {
	switch r {
	case LostLeaseExpired:
		return "lease expired"
	case LostSteppedDown:
		return "stepped down"
	case LostTransferring:
		return "transferring"
	case LostRemoved:
		return "removed"
	case LostStopped:
		return "stopped"
	case LostFailed:
		return "failed"
	}
	return fmt.Sprintf("LostReason(%d)", uint32(r))
}

// Event is one change, in the order they happened. Fields that do not apply to Kind are zero.
type Event struct {
	Kind       EventKind
	LostReason LostReason
	// Token is the leadership's token, for EventElected and EventLost.
	Token Token
	// LeaseDeadline is the lease's end when EventElected was reported, on the node's clock.
	LeaseDeadline uint64
	// Leader (0: none known) and Term, for EventLeaderChanged.
	Leader uint64
	Term   uint64
}

// AppliedKind is what an Applied item carries.
type AppliedKind uint32

// The kinds of committed item (FK_APPLIED_*).
const (
	// AppliedEntry is a committed proposal: apply Data.
	AppliedEntry AppliedKind = C.FK_APPLIED_ENTRY
	// AppliedSnapshot is the host's state as of Index: replace the state with Data.
	AppliedSnapshot AppliedKind = C.FK_APPLIED_SNAPSHOT
)

// Applied is a committed item of the log, delivered in index order.
type Applied struct {
	Kind  AppliedKind
	Index uint64
	Term  uint64
	Data  []byte
}

// pumpBuffer is how many items a channel of Events or Applied holds before its goroutine
// waits for the reader.
const pumpBuffer = 64

// pumpPoll is how long one wait in the library lasts before the goroutine looks whether the
// node is being closed.
const pumpPoll = 50 // milliseconds

// Events is the node's events as a channel, closed when the node stops or fails (after the
// last event; a leader that fails delivers EventLost with LostFailed) or is closed. Every call
// returns the same channel; with several readers, each event goes to one of them. Events are
// news: Leadership is the truth. Read them: the library keeps the latest 1024 and counts the
// rest in NodeStatus.EventsDropped.
func (n *Node) Events() <-chan Event {
	if n == nil {
		return closedChannel[Event]()
	}
	return n.events.start(n, func(ptr *C.fk_node) (Event, C.fk_status) {
		var e C.fk_event
		status := C.fk_node_next_event(ptr, pumpPoll, &e)
		return Event{
			Kind:          EventKind(e.kind),
			LostReason:    LostReason(e.lost_reason),
			Token:         Token{uint64(e.token.generation), uint64(e.token.holder)},
			LeaseDeadline: uint64(e.lease_deadline_ns),
			Leader:        uint64(e.leader),
			Term:          uint64(e.term),
		}, status
	})
}

// Applied is the log's committed items as a channel, in index order, closed when the node
// stops, fails or is closed. A node whose host proposes must read it: items queue until read.
func (n *Node) Applied() <-chan Applied {
	if n == nil {
		return closedChannel[Applied]()
	}
	return n.applied.start(n, func(ptr *C.fk_node) (Applied, C.fk_status) {
		var a C.fk_applied
		status := C.fk_node_next_applied(ptr, pumpPoll, &a)
		if status != C.FK_STATUS_OK {
			return Applied{}, status
		}
		return Applied{
			Kind:  AppliedKind(a.kind),
			Index: uint64(a.index),
			Term:  uint64(a.term),
			Data:  bufBytes(&a.data),
		}, status
	})
}

// pumpOnce is one channel fed by a goroutine that waits in the library, started on first use.
type pumpOnce[T any] struct {
	mu      sync.Mutex
	started bool
	ch      chan T
}

// start returns the channel, starting its goroutine on the first call. next waits up to
// pumpPoll for one item.
func (p *pumpOnce[T]) start(n *Node, next func(*C.fk_node) (T, C.fk_status)) <-chan T {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.started = true
		p.ch = make(chan T, pumpBuffer)
		// On a closed node the goroutine finds it closed at once and closes the channel.
		go pump(n, p.ch, next)
	}
	return p.ch
}

func closedChannel[T any]() <-chan T {
	ch := make(chan T)
	close(ch)
	return ch
}

// errPumpTimeout marks a wait in the library that ended with nothing.
var errPumpTimeout = errors.New("no item yet")

// pump feeds ch until the node stops or is closed, then closes it.
func pump[T any](n *Node, ch chan<- T, next func(*C.fk_node) (T, C.fk_status)) {
	defer close(ch)
	for {
		select {
		case <-n.done:
			return
		default:
		}
		var item T
		err := n.with(func(ptr *C.fk_node) error {
			var status C.fk_status
			item, status = next(ptr)
			switch status {
			case C.FK_STATUS_OK:
				return nil
			case C.FK_STATUS_TIMEOUT:
				return errPumpTimeout
			}
			return &Error{Status: Status(status)}
		})
		if errors.Is(err, errPumpTimeout) {
			continue
		}
		if err != nil {
			// Stopped (or failed) and read to the end, or closed.
			return
		}
		select {
		case ch <- item:
		case <-n.done:
			return
		}
	}
}
