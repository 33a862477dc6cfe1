package fencekit

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// prompt is how soon after its context ends a call must return. The library's own wait would
// last until the proposal's outcome or the node's stop: far longer.
const prompt = time.Second

// goroutinesSettle waits for the goroutine count to come back to at most base: every
// goroutine a test's calls started has exited.
func goroutinesSettle(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before the test:\n%s", runtime.NumGoroutine(), base,
				buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// within runs f and returns its error, failing the test if f takes longer than d (f goes on
// on its own goroutine, so a call that never returns fails the test instead of hanging it).
func within(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("still waiting after %v", time.Since(began))
		return nil
	}
}

// stranded starts a 3-node group with a slow election timeout (a lease of about a second),
// waits for a leader, then closes its two followers: the leader still holds its lease, but
// nothing it proposes can commit.
func stranded(t *testing.T) *Node {
	t.Helper()
	configs := group(t, 3)
	nodes := make([]*Node, len(configs))
	for i, c := range configs {
		c.Timing = Timing{Tick: 50 * time.Millisecond, ElectionTicks: 20, HeartbeatTicks: 3, Margin: 50 * time.Millisecond}
		nodes[i] = start(t, c)
	}
	leader, _ := leaderOf(t, nodes, -1)
	for i, n := range nodes {
		if i != leader {
			n.Close()
		}
	}
	return nodes[leader]
}

// A proposal that cannot commit returns ctx.Err() as soon as its context is cancelled, and
// when its deadline passes, and after Close no goroutine of it is left.
func TestAProposalReturnsWhenItsContextEnds(t *testing.T) {
	base := runtime.NumGoroutine()
	leader := stranded(t)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := within(t, 50*time.Millisecond+prompt, func() error {
		_, err := leader.Propose(ctx, []byte("never commits"))
		return err
	})
	if errors.Is(err, ErrNotLeader) {
		t.Skip("the lease lapsed before the proposal (a very slow machine)")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled proposal: %v", err)
	}

	ctx, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer stop()
	err = within(t, 100*time.Millisecond+prompt, func() error {
		_, err := leader.Propose(ctx, []byte("never commits either"))
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a proposal past its deadline: %v", err)
	}

	// The cancelled proposal still waits in the library; Close stops the node, which ends
	// that wait, and frees it. Nothing is left behind.
	leader.Close()
	goroutinesSettle(t, base)
}

// A context that has ended already stops a call before it reaches the library.
func TestAnEndedContextStopsEveryWaitingCallAtOnce(t *testing.T) {
	n := start(t, group(t, 1)[0])
	if _, err := n.WaitLeadership(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Propose(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Propose: %v", err)
	}
	if err := n.Transfer(ctx, 2); !errors.Is(err, context.Canceled) {
		t.Errorf("Transfer: %v", err)
	}
	if _, err := n.StepDown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("StepDown: %v", err)
	}
	if err := n.Compact(ctx, 0, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Compact: %v", err)
	}
	if err := n.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Stop: %v", err)
	}
	if _, err := n.WaitLeadership(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitLeadership: %v", err)
	}
	// None of them reached the node: it still leads, and its log has only its election.
	if _, err := n.Leadership(); err != nil {
		t.Errorf("the node after the refused calls: %v", err)
	}
}

// WaitLeadership waits for an election, returns ctx.Err() when none comes in time, and
// does not wait for a node that cannot lead again.
func TestWaitLeadershipEndsWithItsContext(t *testing.T) {
	// One member of three, alone: it can never win an election.
	alone := start(t, group(t, 3)[0])
	err := within(t, 200*time.Millisecond+prompt, func() error {
		_, err := alone.WaitLeadership(ctxFor(t, 200*time.Millisecond))
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a node with no quorum: %v", err)
	}

	n := start(t, group(t, 1)[0])
	l, err := n.WaitLeadership(ctxFor(t, 10*time.Second))
	if err != nil || l.Token.Holder != 1 {
		t.Fatalf("a single node's leadership: %+v %v", l, err)
	}
	if err := n.Stop(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	err = within(t, prompt, func() error {
		_, err := n.WaitLeadership(ctxFor(t, 10*time.Second))
		return err
	})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("a stopped node: %v", err)
	}
	n.Close()
	if _, err := n.WaitLeadership(ctxFor(t, 10*time.Second)); !errors.Is(err, ErrClosed) {
		t.Fatalf("a closed node: %v", err)
	}
}
